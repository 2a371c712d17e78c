//! The committed CRD is the generator's output, and the API server accepts it.

use std::process::Command;

fn generated_crd() -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sklm-restore-operator"))
        .arg("crd")
        .output()
        .expect("run the crd subcommand");
    assert!(output.status.success(), "crd subcommand failed");
    String::from_utf8(output.stdout).expect("UTF-8 YAML")
}

#[test]
fn crd_files_match_generator() {
    let generated = generated_crd();
    for path in [
        "crds/sklmrestores.sklm.dev.yaml",
        "charts/sklm-restore-operator/crds/sklmrestores.sklm.dev.yaml",
    ] {
        let full = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
        let committed =
            std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {path}: {e}"));
        assert!(
            committed == generated,
            "{path} is stale: run `cargo run -- crd > {path}`"
        );
    }
}

#[test]
fn crd_accepted_by_api_server_dry_run() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: run hack/test.sh"
    );
    let output = Command::new("kubectl")
        .args([
            "apply",
            "--server-side",
            "--force-conflicts",
            "--dry-run=server",
            "-f",
        ])
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/crds/sklmrestores.sklm.dev.yaml"
        ))
        .output()
        .expect("run kubectl");
    assert!(
        output.status.success(),
        "API server rejected the CRD: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn crd_names_and_columns() {
    let crd: serde_yaml::Value = serde_yaml::from_str(&generated_crd()).expect("YAML");
    let spec = &crd["spec"];
    assert_eq!(spec["names"]["shortNames"][0], "sklmr");
    assert_eq!(spec["names"]["categories"][0], "sklm");
    assert_eq!(spec["scope"], "Namespaced");
    let version = &spec["versions"][0];
    assert_eq!(
        version["subresources"]["status"],
        serde_yaml::Value::Mapping(serde_yaml::Mapping::default())
    );
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_sequence()
        .expect("printer columns")
        .iter()
        .map(|c| c["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        columns,
        ["Phase", "Step", "Ready", "Started", "Age", "Message"]
    );
    let conditions =
        &version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(conditions["x-kubernetes-list-map-keys"][0], "type");
}

#[test]
fn crd_explain_shows_field_docs() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "KUBECONFIG is not set: run hack/test.sh"
    );
    let output = Command::new("kubectl")
        .args(["explain", "sklmrestore.spec.server"])
        .output()
        .expect("run kubectl");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(text.contains("insecureSkipTlsVerify"), "{text}");
    assert!(
        text.contains("Skips verification of the server's TLS certificate"),
        "{text}"
    );
}
