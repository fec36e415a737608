//! The deploy kit agrees with itself, with `.env.example` and with bff's real routes. No
//! Docker engine runs here, so these files are checked by parsing them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)] // a panic is a failed test

use serde_yaml_ng::Value;
use std::collections::BTreeSet;
use std::path::Path;

fn read(relative: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(relative),
    )
    .unwrap()
}

fn yaml(relative: &str) -> Value {
    serde_yaml_ng::from_str(&read(relative)).unwrap()
}

fn compose() -> Value {
    yaml("deploy/docker-compose.yml")
}

fn service<'a>(compose: &'a Value, name: &str) -> &'a Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("no service {name}"))
}

fn env<'a>(service: &'a Value, key: &str) -> &'a str {
    service["environment"][key]
        .as_str()
        .unwrap_or_else(|| panic!("no environment {key}"))
}

/// The `volumes` entries of a service.
fn volumes(service: &Value) -> Vec<&str> {
    service["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

/// `${NAME…}` references in a text.
fn interpolated(text: &str) -> BTreeSet<String> {
    text.split("${")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
                .collect()
        })
        .collect()
}

/// The `${NAME}` a value interpolates (exactly one).
fn variable_of(value: &str) -> String {
    let names = interpolated(value);
    assert_eq!(names.len(), 1, "{value}");
    names.into_iter().next().unwrap()
}

fn documented() -> BTreeSet<String> {
    read(".env.example")
        .lines()
        .filter_map(|line| {
            let (name, _) = line.trim_start_matches('#').trim().split_once('=')?;
            name.chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
                .then(|| name.to_owned())
        })
        .collect()
}

/// Host and port of an `http://host:port…` URL.
fn host_port(url: &str) -> (String, u16) {
    let rest = url.strip_prefix("http://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let (host, port) = authority.split_once(':').unwrap();
    (host.to_owned(), port.parse().unwrap())
}

fn bff_port(compose: &Value) -> u16 {
    env(service(compose, "bff"), "BFF_BIND")
        .rsplit(':')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// Whether a service exposes `port` inside the network (a `host:container` mapping or a
/// command-line port).
fn container_ports(service: &Value) -> BTreeSet<u16> {
    let mut ports: BTreeSet<u16> = service["ports"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(|mapping| mapping.as_str()?.rsplit(':').next()?.parse().ok())
        .collect();
    let command: Vec<&str> = service["command"]
        .as_sequence()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    if let Some(at) = command.iter().position(|arg| *arg == "--port") {
        ports.insert(command[at + 1].parse().unwrap());
    }
    ports
}

#[test]
fn the_stack_has_every_service() {
    let compose = compose();
    for name in [
        "kong",
        "bff",
        "litellm",
        "open-webui",
        "langfuse-web",
        "langfuse-worker",
        "postgres",
        "clickhouse",
        "redis",
        "minio",
    ] {
        service(&compose, name);
    }
}

#[test]
fn every_compose_variable_is_documented_in_env_example() {
    let documented = documented();
    let missing: Vec<String> = interpolated(&read("deploy/docker-compose.yml"))
        .into_iter()
        .filter(|name| !documented.contains(name))
        .collect();
    assert!(
        missing.is_empty(),
        "used by compose, not in .env.example: {missing:?}"
    );
}

#[test]
fn bff_gets_only_variables_it_reads() {
    let compose = compose();
    let read_by_bff: BTreeSet<&str> = bff_api::settings::ENV_VARIABLES
        .into_iter()
        .chain(bff_auth::ENV_VARIABLES)
        .collect();
    let bff = service(&compose, "bff");
    for key in bff["environment"].as_mapping().unwrap().keys() {
        let key = key.as_str().unwrap();
        assert!(
            read_by_bff.contains(key),
            "bff is given {key}, which it never reads"
        );
    }
}

#[test]
fn bff_points_at_the_services_that_exist() {
    let compose = compose();
    let bff = service(&compose, "bff");
    for (variable, target) in [
        ("LITELLM_URL", "litellm"),
        ("OPENWEBUI_URL", "open-webui"),
        ("LANGFUSE_HOST", "langfuse-web"),
    ] {
        let (host, port) = host_port(env(bff, variable));
        assert_eq!(host, target, "{variable}");
        assert!(
            container_ports(service(&compose, target)).contains(&port),
            "{variable} uses port {port}, which {target} does not serve"
        );
    }
}

#[test]
fn open_webui_uses_bff_as_its_openai_connection_with_shared_secrets() {
    let compose = compose();
    let bff = service(&compose, "bff");
    let webui = service(&compose, "open-webui");
    // Open WebUI reaches bff through Kong, on the route Kong keeps for its connection.
    assert_eq!(
        env(webui, "OPENAI_API_BASE_URLS"),
        "http://kong-internal:8000/v1"
    );
    assert!(
        service(&compose, "kong")["networks"]["default"]["aliases"]
            .as_sequence()
            .unwrap()
            .iter()
            .any(|alias| alias == "kong-internal")
    );
    let config = yaml("config/kong.yml");
    let connection = kong_route(&config, "openwebui-connection");
    assert_eq!(connection["hosts"][0], "kong-internal");
    assert_eq!(connection["paths"][0], "/v1");
    assert_eq!(connection["plugins"][0]["name"], "rate-limiting");
    let service_key = env(bff, "AUTH_SERVICE_KEYS");
    assert!(service_key.starts_with("openwebui="), "{service_key}");
    assert_eq!(
        variable_of(env(webui, "OPENAI_API_KEYS")),
        variable_of(service_key)
    );
    assert_eq!(
        variable_of(env(webui, "WEBUI_SECRET_KEY")),
        variable_of(env(bff, "WEBUI_SECRET_KEY"))
    );
    assert_eq!(
        variable_of(env(webui, "FORWARD_USER_INFO_HEADER_JWT_SECRET")),
        variable_of(env(bff, "OPENWEBUI_FORWARD_JWT_SECRET"))
    );
}

#[test]
fn open_webuis_connection_sends_the_groups_and_the_task() {
    let compose = compose();
    let configs: Value =
        serde_yaml_ng::from_str(env(service(&compose, "open-webui"), "OPENAI_API_CONFIGS"))
            .unwrap();
    let headers = &configs["0"]["headers"];
    assert_eq!(headers["X-OpenWebUI-Task"], "{{TASK}}");
    assert_eq!(headers["X-OpenWebUI-User-Groups"], "{{USER_GROUPS}}");
    assert_eq!(headers["X-OpenWebUI-User-Group-Ids"], "{{USER_GROUP_IDS}}");
    let bff_headers = [
        bff_auth::FORWARDED_USER_GROUPS_HEADER,
        bff_auth::FORWARDED_USER_GROUP_IDS_HEADER,
        bff_api::tasks::TASK_HEADER,
    ];
    for (name, _) in headers.as_mapping().unwrap() {
        let name = name.as_str().unwrap().to_ascii_lowercase();
        assert!(
            bff_headers.contains(&name.as_str()),
            "bff does not read {name}"
        );
    }
}

#[test]
fn litellm_runs_the_project_config_with_the_key_bff_uses() {
    let compose = compose();
    let litellm = service(&compose, "litellm");
    let mounts = volumes(litellm);
    assert!(
        mounts
            .iter()
            .any(|m| m.starts_with("../config/litellm.yaml:")),
        "{mounts:?}"
    );
    let config = yaml("config/litellm.yaml");
    assert_eq!(
        config["general_settings"]["master_key"],
        "os.environ/LITELLM_MASTER_KEY"
    );
    assert_eq!(
        variable_of(env(litellm, "LITELLM_MASTER_KEY")),
        variable_of(env(service(&compose, "bff"), "LITELLM_API_KEY"))
    );
    // bff is the one writer of each request's generation: LiteLLM's Langfuse callback stays
    // off, or every request's usage and cost would be in Langfuse twice.
    for callbacks in ["success_callback", "failure_callback", "callbacks"] {
        let listed = &config["litellm_settings"][callbacks];
        assert!(
            listed.as_sequence().is_none_or(|names| {
                !names.iter().any(|name| {
                    name.as_str()
                        .is_some_and(|name| name.starts_with("langfuse"))
                })
            }),
            "{callbacks}: {listed:?}"
        );
    }
    assert!(litellm["environment"].get("LANGFUSE_SECRET_KEY").is_none());
    let models = config["model_list"].as_sequence().unwrap();
    assert!(
        models
            .iter()
            .any(|m| m["litellm_params"]["mock_response"].is_string()),
        "a development model needs no provider key"
    );
    assert!(
        models.iter().any(|m| m["model_name"] == "vllm"
            && m["litellm_params"]["api_base"] == "os.environ/VLLM_API_BASE"),
        "an OpenAI-compatible server (vLLM) can be configured"
    );
    let variables = models.iter().flat_map(|model| {
        model["litellm_params"]
            .as_mapping()
            .unwrap()
            .values()
            .filter_map(|value| value.as_str()?.strip_prefix("os.environ/"))
    });
    for variable in variables {
        assert!(
            documented().contains(variable),
            "{variable} is not in .env.example"
        );
        assert!(
            litellm["environment"].get(variable).is_some(),
            "LiteLLM is not given {variable}"
        );
    }
}

/// The Kong route named `name`.
fn kong_route<'a>(config: &'a Value, name: &str) -> &'a Value {
    config["services"][0]["routes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|route| route["name"] == name)
        .unwrap_or_else(|| panic!("Kong has no route {name}"))
}

#[test]
fn ready_and_metrics_are_on_an_operations_only_route() {
    let config = yaml("config/kong.yml");
    let operations = kong_route(&config, "operations");
    let paths: Vec<&str> = operations["paths"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(paths, ["/ready", "/metrics"]);
    let restriction = &operations["plugins"][0];
    assert_eq!(restriction["name"], "ip-restriction");
    let allowed: Vec<&str> = restriction["config"]["allow"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        allowed.iter().all(|range| {
            range.starts_with("10.")
                || range.starts_with("172.16.")
                || range.starts_with("192.168.")
                || range.starts_with("127.")
        }),
        "{allowed:?}: only private addresses"
    );
    // Nowhere else do /ready or /metrics get through.
    for route in config["services"][0]["routes"].as_sequence().unwrap() {
        if route["name"] != "operations" {
            for path in route["paths"].as_sequence().unwrap() {
                assert!(path != "/ready" && path != "/metrics", "{route:?}");
            }
        }
    }
}

#[test]
fn kong_routes_point_at_real_bff_routes() {
    let compose = compose();
    let kong = service(&compose, "kong");
    let declarative = env(kong, "KONG_DECLARATIVE_CONFIG");
    let mounts = volumes(kong);
    assert!(
        mounts.contains(&format!("../config/kong.yml:{declarative}:ro").as_str()),
        "{mounts:?}"
    );

    let config = yaml("config/kong.yml");
    let services = config["services"].as_sequence().unwrap();
    assert_eq!(services.len(), 1);
    assert_eq!(
        services[0]["url"],
        format!("http://bff:{}", bff_port(&compose)).as_str()
    );
    let paths: Vec<&str> = services[0]["routes"]
        .as_sequence()
        .unwrap()
        .iter()
        .flat_map(|route| {
            route["paths"]
                .as_sequence()
                .unwrap()
                .iter()
                .filter_map(Value::as_str)
        })
        .collect();
    for required in [
        "/chat",
        "/v1",
        "/observability",
        "/monitoring",
        "/health",
        "/ready",
        "/metrics",
    ] {
        assert!(paths.contains(&required), "Kong has no {required} route");
    }
    for path in &paths {
        assert!(
            bff_api::routes::ROUTES
                .iter()
                .any(|(_, route)| route.starts_with(path)),
            "Kong route {path} matches no bff route"
        );
    }
    let plugins: Vec<&str> = services[0]["plugins"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter_map(|plugin| plugin["name"].as_str())
        .collect();
    assert!(
        plugins.contains(&"cors") && plugins.contains(&"rate-limiting"),
        "{plugins:?}"
    );
}

#[test]
fn the_image_is_multi_stage_non_root_with_a_health_check() {
    let dockerfile = read("deploy/Dockerfile");
    let stages = dockerfile
        .lines()
        .filter(|line| line.starts_with("FROM "))
        .count();
    assert!(stages >= 2, "multi-stage build");
    assert!(dockerfile.contains("cargo build --release --locked -p bff-api --bin bff"));
    let user = dockerfile
        .lines()
        .find_map(|line| line.strip_prefix("USER "))
        .unwrap();
    assert_ne!(user.trim(), "root");
    assert!(dockerfile.contains("HEALTHCHECK") && dockerfile.contains("/health"));
    // The policy path the image sets is where compose mounts config/.
    let policy = dockerfile
        .split_whitespace()
        .find_map(|word| word.strip_prefix("RBAC_POLICY_FILE="))
        .unwrap();
    let compose = compose();
    let bff = service(&compose, "bff");
    assert_eq!(env(bff, "RBAC_POLICY_FILE"), policy);
    let mounts = volumes(bff);
    let config_mount = mounts.iter().find(|m| m.starts_with("../config:")).unwrap();
    assert!(
        policy.starts_with(config_mount.split(':').nth(1).unwrap()),
        "{policy} vs {config_mount}"
    );
}
