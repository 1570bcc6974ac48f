fn main() -> Result<(), Box<dyn std::error::Error>> {
    // A vendored protoc keeps the build free of a system protoc; PROTOC from the environment wins.
    if std::env::var_os("PROTOC").is_none() {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    println!("cargo:rerun-if-changed=scot/v1/scot.proto");
    tonic_prost_build::configure().compile_protos(&["scot/v1/scot.proto"], &["."])?;
    Ok(())
}
