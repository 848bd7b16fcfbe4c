fn main() -> std::process::ExitCode {
    #[cfg(all(unix, feature = "embedded"))]
    lmc::cli::ensure_passive_openmp();
    let code = lmc::cli::main();
    // Replies still queued for the cache writer (an LM stack kept alive to
    // the end) are committed before the process goes.
    lmc::lm::cache::flush_all();
    code
}
