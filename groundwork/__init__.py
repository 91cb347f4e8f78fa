"""What every other package stands on: settings, user errors, the Kafka partitioner and
client I/O, local ports and processes. Imports no other package of the project."""
