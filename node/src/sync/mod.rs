//! The sans-IO sync engine (see the sync issue). No tokio, quinn or sled here.
