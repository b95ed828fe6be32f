//! Node objects as the installer and the daemon read them: eligibility
//! (kernel version, OS image), the published status annotation and the
//! unload request. Never a panic, whatever the node says about itself.
#![no_main]

use accel_k8s::node::{self, NodeStatus};
use k8s_openapi::api::core::v1::Node;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(node) = serde_json::from_slice::<Node>(data) else {
        return;
    };
    let e = node::eligibility(&node);
    let _ = (e.is_eligible(), e.describe().len());
    let _ = node::is_virtual(&node);
    let _ = node::kernel_version(&node).map(|k| k.parse::<accel_k8s::kernel::KernelRelease>());
    let _ = node::os_image(&node);
    let _ = node::unload_request(&node);
    if let Some(Ok(status)) = NodeStatus::of(&node) {
        let _ = status.label_value();
    }
});
