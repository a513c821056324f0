//! Client secrets and one-time codes: generation and Argon2id hashing.
