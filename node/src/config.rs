//! Node configuration file (`fieldsync.toml`): owned by the CLI work.
