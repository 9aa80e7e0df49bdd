//! Generates the Rust types of TensorBoard's event files and HParams plugin data from the
//! `.proto` files vendored under `proto/`, with protox (a protobuf compiler in Rust, so no
//! `protoc` is needed) and prost-build.

fn main() {
    let mut args = std::env::args().skip(1);
    let root = args.next().expect("usage: protogen PROTO_ROOT OUT_DIR");
    let out = args.next().expect("usage: protogen PROTO_ROOT OUT_DIR");
    let files = [
        "tensorboard/compat/proto/event.proto",
        "tensorboard/plugins/hparams/plugin_data.proto",
    ];
    let descriptors = protox::compile(files, [root]).expect("the .proto files compile");
    let mut config = prost_build::Config::new();
    // google.protobuf.Value and ListValue as plain generated types instead of prost-types.
    config.compile_well_known_types();
    config.out_dir(out);
    config
        .compile_fds(descriptors)
        .expect("prost-build generates Rust");
}
