//! Device names: every accepted form, the exact errors for bad ones, and what `cuda:N` and `auto`
//! resolve to on this machine (with and without the `cuda` feature, with and without a GPU).

use dprox_compute::{Backend, CUDA_COMPILED, ComputeError, Device, DeviceNameError};

#[test]
fn parses_every_form() {
    assert_eq!(Device::parse("cpu").unwrap(), Device::Cpu);
    assert_eq!(Device::parse("cuda").unwrap(), Device::Cuda(0));
    assert_eq!(Device::parse("cuda:0").unwrap(), Device::Cuda(0));
    assert_eq!(Device::parse("cuda:3").unwrap(), Device::Cuda(3));
    assert_eq!(Device::parse("cuda:12").unwrap(), Device::Cuda(12));
    assert_eq!(Device::parse("auto").unwrap(), Device::Auto);
    assert_eq!("cuda:1".parse::<Device>().unwrap(), Device::Cuda(1));
    assert_eq!(Device::default(), Device::Cpu);
}

#[test]
fn displays_the_canonical_name() {
    for (given, shown) in [("cpu", "cpu"), ("cuda", "cuda:0"), ("cuda:7", "cuda:7"), ("auto", "auto")] {
        let d = Device::parse(given).unwrap();
        assert_eq!(d.to_string(), shown);
        // The canonical name parses back to the same device.
        assert_eq!(Device::parse(shown).unwrap(), d);
    }
}

#[test]
fn rejects_bad_names_with_the_name_in_the_message() {
    for bad in [
        "",
        "gpu",
        "CPU",
        "Cuda",
        " cpu",
        "cpu ",
        "cuda:",
        "cuda:x",
        "cuda:-1",
        "cuda:+1",
        "cuda: 1",
        "cuda:1.0",
        "cuda0",
        "cuda:0:1",
        "cuda:99999999999999999999999",
        "metal",
        "auto:0",
    ] {
        let err = Device::parse(bad).unwrap_err();
        assert_eq!(err, DeviceNameError { given: bad.to_string() }, "{bad:?}");
        assert_eq!(
            err.to_string(),
            format!("unknown device `{bad}`: expected \"cpu\", \"cuda\", \"cuda:N\" or \"auto\""),
        );
    }
}

#[test]
fn cpu_always_resolves() {
    let b = Backend::open(Device::Cpu).unwrap();
    assert!(matches!(b, Backend::Cpu));
    assert!(!b.is_cuda());
    assert_eq!(b.to_string(), "cpu");
}

/// Without the feature: NotCompiledWithCuda, telling how to rebuild. With it: a device, or the
/// reason there is none (on a machine without a driver: exactly "no CUDA driver found").
#[test]
fn cuda_resolves_or_says_why() {
    let resolved = Backend::open(Device::Cuda(0));
    if std::env::var_os("DPROX_REQUIRE_CUDA").is_some() {
        assert!(resolved.is_ok(), "DPROX_REQUIRE_CUDA is set but cuda:0 does not open: {:?}", resolved.err());
    }
    match (CUDA_COMPILED, resolved) {
        (true, Ok(b)) => {
            assert!(b.is_cuda());
            assert!(b.to_string().starts_with("cuda:0 ("), "{b}");
        }
        (false, Ok(b)) => panic!("a CUDA device opened in a build without CUDA: {b}"),
        (false, Err(e)) => {
            assert_eq!(e, ComputeError::NotCompiledWithCuda { device: "cuda:0".into() });
            assert_eq!(
                e.to_string(),
                "device `cuda:0` needs CUDA support, which this build lacks: rebuild with `--features cuda` \
                 (e.g. `cargo build --release -p dprox-cli --features cuda`)"
            );
        }
        (true, Err(e @ ComputeError::NoDriver { .. })) => {
            assert_eq!(e.to_string(), "device `cuda:0`: no CUDA driver found (libcuda.so not loadable)");
        }
        (true, Err(e @ ComputeError::MissingLibrary { .. })) => {
            let s = e.to_string();
            assert!(s.contains("libnvrtc.so") || s.contains("libcublas.so"), "{s}");
            assert!(s.contains("LD_LIBRARY_PATH"), "{s}");
        }
        (true, Err(ComputeError::NoSuchDevice { ordinal, count })) => assert_eq!((ordinal, count), (0, 0)),
        (true, Err(e)) => panic!("unexpected error opening cuda:0: {e}"),
    }
}

/// A device ordinal past the last one names the ordinal and the count (when a driver is there).
#[test]
fn missing_ordinal_names_the_count() {
    let err = Backend::open(Device::Cuda(1000)).unwrap_err();
    match &err {
        ComputeError::NoSuchDevice { ordinal, count } => {
            assert_eq!(*ordinal, 1000);
            assert_eq!(
                err.to_string(),
                format!("no CUDA device 1000: this machine has {count} CUDA device(s)")
            );
        }
        // No CUDA here at all: the same errors as for cuda:0, naming cuda:1000.
        ComputeError::NotCompiledWithCuda { device } if !CUDA_COMPILED => assert_eq!(device, "cuda:1000"),
        ComputeError::NoDriver { device } | ComputeError::MissingLibrary { device, .. } if CUDA_COMPILED => {
            assert_eq!(device, "cuda:1000");
        }
        e => panic!("unexpected error opening cuda:1000: {e}"),
    }
}

/// `auto` never fails: CUDA when cuda:0 opens, else the CPU.
#[test]
fn auto_falls_back_to_the_cpu() {
    let auto = Backend::open(Device::Auto).unwrap();
    match Backend::open(Device::Cuda(0)) {
        Ok(_) => assert!(auto.is_cuda()),
        Err(_) => assert!(matches!(auto, Backend::Cpu)),
    }
}
