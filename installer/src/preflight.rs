//! `preflight`: which nodes could carry the datapath, and which mesh control
//! plane is present. Reads only.

use k8s_openapi::api::apps::v1::Deployment;
use kube::Api;
use kube::api::ListParams;

use accel_k8s::node::{self as knode, Eligibility};

use crate::cluster::{Cluster, Explain};
use crate::nodes;
use crate::{Ui, exit};

/// ASM's own API group: present in clusters an Alibaba Cloud Service Mesh
/// instance manages, even when istiod runs outside the cluster.
const ASM_GROUP: &str = "istio.alibabacloud.com";

pub async fn run(cluster: &Cluster, ui: &mut Ui<'_>) -> anyhow::Result<i32> {
    let nodes = nodes::list_nodes(cluster).await?;
    let mut rows = Vec::new();
    let mut eligible = 0;
    for node in &nodes {
        let verdict = knode::eligibility(node);
        let why = match &verdict {
            Eligibility::Eligible => {
                eligible += 1;
                "eligible".to_string()
            }
            Eligibility::NotEligible(why) => format!("not eligible: {why}"),
        };
        rows.push(vec![
            nodes::name(node).to_string(),
            knode::kernel_version(node).unwrap_or("-").to_string(),
            knode::os_image(node).unwrap_or("-").to_string(),
            why,
        ]);
    }
    ui.table(&["NODE", "KERNEL", "OS IMAGE", "ELIGIBLE"], &rows);
    ui.line(format!("{eligible} of {} node(s) eligible", nodes.len()));
    ui.blank();
    mesh(cluster, ui).await?;
    if eligible == 0 {
        ui.line("no node is eligible: the add-on would run but accelerate nothing");
        return Ok(exit::NOT_DONE);
    }
    Ok(exit::OK)
}

/// One istiod Deployment as found.
struct ControlPlane {
    namespace: String,
    name: String,
    revision: String,
    version: String,
    asm: bool,
}

/// The version in an image reference's tag (`…/pilot:1.24.2` → `1.24.2`).
fn image_version(image: &str) -> String {
    let image = image.split('@').next().unwrap_or(image);
    let last = image.rsplit('/').next().unwrap_or(image);
    match last.split_once(':') {
        Some((_, tag)) => tag.trim_start_matches('v').to_string(),
        None => "unknown (no image tag)".to_string(),
    }
}

fn control_plane(d: &Deployment) -> ControlPlane {
    let labels = d.metadata.labels.clone().unwrap_or_default();
    let image = d
        .spec
        .as_ref()
        .and_then(|s| s.template.spec.as_ref())
        .and_then(|p| {
            p.containers
                .iter()
                .find(|c| c.name == "discovery")
                .or(p.containers.first())
        })
        .and_then(|c| c.image.clone())
        .unwrap_or_default();
    // ASM images come from Alibaba Cloud registries and carry an "aliyun" tag suffix.
    let asm = labels.get("provider").is_some_and(|p| p == "asm")
        || image.contains("aliyuncs.com")
        || image.contains("-aliyun");
    ControlPlane {
        namespace: d.metadata.namespace.clone().unwrap_or_default(),
        name: d.metadata.name.clone().unwrap_or_default(),
        revision: labels
            .get("istio.io/rev")
            .cloned()
            .unwrap_or_else(|| "default".into()),
        version: if image.is_empty() {
            "unknown".into()
        } else {
            image_version(&image)
        },
        asm,
    }
}

async fn mesh(cluster: &Cluster, ui: &mut Ui<'_>) -> anyhow::Result<()> {
    let api: Api<Deployment> = Api::all(cluster.client.clone());
    let found = api
        .list(&ListParams::default().labels("app=istiod"))
        .await
        .explain(cluster, "list", "deployments");
    let deployments = match found {
        Ok(list) => list.items,
        // The mesh report is advice; a reader without this right still gets the node table.
        Err(e) => {
            ui.warn(format!("cannot look for istiod: {e}"));
            Vec::new()
        }
    };
    if !deployments.is_empty() {
        let rows: Vec<Vec<String>> = deployments
            .iter()
            .map(control_plane)
            .map(|c| {
                vec![
                    if c.asm { "ASM" } else { "Istio" }.to_string(),
                    c.namespace,
                    c.name,
                    c.revision,
                    c.version,
                ]
            })
            .collect();
        ui.line("mesh control plane:");
        ui.table(
            &["MESH", "NAMESPACE", "DEPLOYMENT", "REVISION", "VERSION"],
            &rows,
        );
        return Ok(());
    }
    let groups = nodes::api_groups(cluster).await?;
    if groups.contains(ASM_GROUP) {
        ui.line(format!(
            "mesh control plane: ASM (managed control plane outside the cluster; {ASM_GROUP} API present)"
        ));
    } else {
        ui.warn(
            "no mesh control plane found (no istiod Deployment, no ASM API): only pods with an \
             Istio/ASM sidecar are accelerated, so nothing will be until a mesh injects sidecars",
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_from_image_tags() {
        assert_eq!(image_version("docker.io/istio/pilot:1.24.2"), "1.24.2");
        assert_eq!(
            image_version(
                "registry-cn-hangzhou-vpc.ack.aliyuncs.com/acs/pilot:v1.22.6.43-g4d1a7b5c-aliyun"
            ),
            "1.22.6.43-g4d1a7b5c-aliyun"
        );
        assert_eq!(
            image_version("localhost:5000/pilot"),
            "unknown (no image tag)"
        );
        assert_eq!(image_version("pilot:1.2@sha256:abc"), "1.2");
    }
}
