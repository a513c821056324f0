//! The central office front door (axum). Built by the gateway issue; the crate exists so the dependency direction schemas <- node <- gateway <- binary is fixed from the start.
