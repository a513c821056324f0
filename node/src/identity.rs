//! Node identity: key pair, self-signed certificate, node id = SHA-256 of the certificate.
