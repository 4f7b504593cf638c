from consumer.commands.cli import main

main()
