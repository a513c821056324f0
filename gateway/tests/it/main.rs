//! Gateway black-box tests: a real server on a loopback port over a sled
//! store in a temp dir, driven by a real HTTP client (reqwest).

mod access;
mod auth;
mod batches;
mod commands;
mod console;
mod contract;
mod edge;
mod events;
mod feed;
mod field_app;
mod input;
mod ops;
mod receiver;
mod records;
mod support;
mod ui;
mod users;
mod webhooks;
