//! `dprox-node CONFIG.toml --id N --coordinator HOST:PORT`: thin; see the library.
// mimalloc keeps large message buffers mapped between messages; glibc's malloc hands them back
// to the kernel and page-faults them in again (measured: 2x on 4-40 MB gossip messages).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Freed memory stays with the process for reuse: mimalloc's delayed purge still handed pages
/// of message and gradient buffers back and faulted them in again (a launched LeNet run: 3,394
/// `madvise` calls and 151,599 page faults, 11 and 126,181 without purging).
fn keep_freed_memory() {
    // mimalloc's `mi_option_purge_delay` (15 in both its v2 and v3 enums; the binding lacks it).
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // SAFETY: sets one of the allocator's options, which any thread may do at any time.
    #[allow(unsafe_code)]
    unsafe {
        libmimalloc_sys::mi_option_set(PURGE_DELAY, -1)
    };
}

fn main() -> anyhow::Result<()> {
    keep_freed_memory();
    use clap::Parser;
    #[derive(clap::Parser)]
    #[command(name = "dprox-node", version, about = "A dprox peer")]
    struct Cli {
        #[command(flatten)]
        args: dprox_node::cli::Args,
    }
    dprox_node::cli::main(Cli::parse().args, &dprox_prepare::Objectives::new())
}
