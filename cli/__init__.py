"""The `forget` command: parse, call the application layer, render. Nothing else lives here."""
