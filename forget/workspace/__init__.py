"""A workspace: its folder, forget.toml, keys and their pins, and the job lock."""
