//! The `dprox` command line, with this crate's Huber objective registered as `huber`: every
//! command of `dprox` (sim, launch, node, coordinator, check-config, plot, status) trains it when a
//! config says `[model] kind = "custom", name = "huber"`.
//!
//! ```text
//! cargo run --release -p dprox-example-custom-objective -- sim examples/custom-objective/huber.toml --out runs/huber
//! cargo run --release -p dprox-example-custom-objective -- launch examples/custom-objective/huber.toml --out runs/huber-cluster
//! ```

// As in dprox's own binaries: mimalloc keeps large message buffers mapped between messages.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use dprox_example_custom_objective::Huber;
use dprox_prepare::Objectives;

fn main() {
    // The threshold of the Huber loss between its quadratic and linear parts.
    let huber = Huber::factory(1.0).expect("1 is a valid threshold");
    dprox_cli::main_with(Objectives::new().with("huber", huber))
}
