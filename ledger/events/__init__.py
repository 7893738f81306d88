"""Account events: the records (`records`), their Avro schema (`schemas/`) and the codec that
writes them to Kafka in the Confluent wire format (`codec`)."""
