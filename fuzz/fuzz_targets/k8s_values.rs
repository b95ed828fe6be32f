//! Single values operators and pod owners type: kernel releases (node
//! status, `--kernel-release`), CIDRs and port lists (Istio annotations,
//! pods file). What parses must survive a print-and-parse round trip.
#![no_main]

use accel_k8s::{kernel::KernelRelease, mesh, net::Cidr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 4 {
        0 => {
            if let Ok(k) = s.parse::<KernelRelease>() {
                let again: KernelRelease = k.raw.parse().expect("raw release reparses");
                assert_eq!((again.major, again.minor, again.patch), (k.major, k.minor, k.patch));
                let _ = k.meets_minimum();
            }
        }
        1 => {
            if let Ok(c) = s.parse::<Cidr>() {
                let again: Cidr = c.to_string().parse().expect("printed CIDR reparses");
                assert_eq!(again, c);
                let _ = accel_k8s::net::cidr_contains(&c, c.addr);
            }
        }
        2 => {
            if let Ok(ports) = mesh::parse_ports(s) {
                assert!(!ports.contains(&0));
            }
        }
        _ => {
            let _ = mesh::parse_cidrs(s);
        }
    }
});
