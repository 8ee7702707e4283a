"""Configuration: the option table, INI reader, expansion, argv, the Config."""
