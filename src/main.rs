fn main() -> std::process::ExitCode {
    #[cfg(all(unix, feature = "embedded"))]
    lmc::cli::ensure_passive_openmp();
    lmc::cli::main()
}
