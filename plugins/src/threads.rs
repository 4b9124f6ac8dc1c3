//! candle's thread count, pinned once per process.

/// candle asks for its thread count at every matrix product, and unless
/// `RAYON_NUM_THREADS` is set it reads and parses `/proc/cpuinfo` to find
/// it: about 65 µs, 37 times per sentence embedded, 18 % of batch-1 latency
/// as measured (`synod-bench embed`: p50 13.0 ms without, 10.7 ms with).
/// Setting a variable for our own process needs `unsafe`
/// (`std::env::set_var`), so a node or a benchmark calls this first: it
/// restarts the process once with it set (exec: same pid) to the count
/// candle would pick.
#[cfg(unix)]
pub fn pin_thread_count() {
    use std::os::unix::process::CommandExt;
    if std::env::var_os("RAYON_NUM_THREADS").is_some() {
        return;
    }
    let Ok(exe) = std::env::current_exe() else { return };
    let threads = num_cpus::get_physical().max(1);
    let err = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("RAYON_NUM_THREADS", threads.to_string())
        .exec();
    eprintln!("warning: could not restart with RAYON_NUM_THREADS={threads} ({err}); embedding runs slower");
}

#[cfg(not(unix))]
pub fn pin_thread_count() {}
