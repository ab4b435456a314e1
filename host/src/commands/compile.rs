//! `redrive __compile` (hidden): the bounded compiler process that `filter::compile` starts. It reads a
//! module on stdin and writes its compiled artifact on stdout, within the limits it was given.

use anyhow::Result;

use crate::cli::{AllocationArg, FuelArg, InternalCompileArgs};
use crate::filter::{EngineOptions, EngineSettings, FuelMetering, InstanceAllocation, compile_child};

/// Compile one module; the exit code tells the parent how it went.
pub fn run(args: &InternalCompileArgs) -> Result<u8> {
    let options = EngineOptions {
        max_memory_bytes: args.max_memory_bytes,
        max_instances: args.max_instances,
        allocation: match args.allocation {
            AllocationArg::Pooling => InstanceAllocation::Pooling,
            AllocationArg::OnDemand => InstanceAllocation::OnDemand,
        },
        fuel: match args.fuel {
            FuelArg::Off => FuelMetering::Off,
            FuelArg::On => FuelMetering::On,
        },
        settings: EngineSettings::default(),
    };
    compile_child(&args.kind, &options, args.limit_memory_bytes, args.limit_cpu_secs).map_err(anyhow::Error::msg)
}
