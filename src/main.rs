fn main() -> std::process::ExitCode {
    kdgrid::cli::main()
}
