//! Adapters for the ports: SQLite (embedded, `sqlite` feature) and DynamoDB + SQS (`aws`).
