//! Compiles the public gRPC API with protox (no `protoc` needed).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(
        [
            "synod/v1/cluster.proto",
            "synod/v1/tasks.proto",
            "synod/v1/identity.proto",
            "synod/v1/vectors.proto",
            "synod/v1/plugins.proto",
            "synod/v1/external.proto",
        ],
        ["proto"],
    )?;
    // The same descriptors, encoded, for gRPC server reflection.
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(out.join("synod_descriptor.bin"), prost::Message::encode_to_vec(&fds))?;
    tonic_prost_build::configure().btree_map(".").compile_fds(fds)?;
    // The subset of Milvus's gRPC API that Milvus-backed collections use
    // (a client only).
    let milvus = protox::compile(["milvus/milvus.proto"], ["proto"])?;
    tonic_prost_build::configure().build_server(false).compile_fds(milvus)?;
    Ok(())
}
