//! `accel-installer`: the cluster add-on installer. The Kubernetes add-on issue fills this in;
//! until then it says so instead of pretending to install anything.

fn main() -> anyhow::Result<()> {
    anyhow::bail!(
        "accel-installer is not implemented yet: install the node daemon with `accel-daemon run` (see README.md)"
    )
}
