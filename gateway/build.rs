//! Compile `schemas/proto/tablestream.proto` with pure-Rust tooling:
//! protox parses it (no `protoc` on the machine), tonic-prost-build
//! generates the server and the client (tests and the benchmark use the
//! client, so both ends come from the same `.proto`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let proto_dir = "../schemas/proto";
    let file = format!("{proto_dir}/tablestream.proto");
    println!("cargo:rerun-if-changed={file}");
    let descriptors = protox::compile([file.as_str()], [proto_dir])?;
    tonic_prost_build::configure().compile_fds(descriptors)?;
    Ok(())
}
