# The zoho-cdc consumer (and, under the compose "demo" profile, the Zoho simulator).
# Production runs Debezium on Kafka Connect, so the image needs neither Java nor the 'local' extra.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

COPY pyproject.toml README.md ./
COPY consumer ./consumer
COPY connectors ./connectors
COPY debezium ./debezium
RUN pip install . && useradd --system --uid 10001 zohocdc

USER zohocdc
EXPOSE 8088
CMD ["zoho-cdc", "run"]
