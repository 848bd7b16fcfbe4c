fn main() -> std::process::ExitCode {
    lmc::cli::main()
}
