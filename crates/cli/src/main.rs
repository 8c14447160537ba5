//! `dprox`: thin; see the library.
// mimalloc keeps large message buffers mapped between messages; glibc's malloc hands them back
// to the kernel and page-faults them in again (measured: 2x on 4-40 MB gossip messages).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    dprox_cli::main()
}
