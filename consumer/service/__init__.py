"""The long-running service around the pipeline: building it from settings, its lifecycle and the group's
members.
"""
