//! Compiles the store's protobuf schema with protox, so no `protoc` is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["synod/store/v1/store.proto"], ["proto"])?;
    prost_build::Config::new().btree_map(["."]).compile_fds(fds)?;
    Ok(())
}
