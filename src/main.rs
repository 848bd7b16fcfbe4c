// mimalloc instead of glibc malloc: the eval loop allocates and frees many
// small buffers per LM call, often on different threads (a request built on
// one, its reply freed on another); at concurrency 1,024 glibc's allocator
// (arena locking, chunk coalescing) was about a quarter of the eval
// thread's CPU. The library leaves the choice to whoever links it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    #[cfg(all(unix, feature = "embedded"))]
    lmc::cli::ensure_passive_openmp();
    let code = lmc::cli::main();
    // Replies still queued for the cache writer (an LM stack kept alive to
    // the end) are committed before the process goes.
    lmc::lm::cache::flush_all();
    code
}
