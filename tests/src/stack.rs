//! The whole system as processes: a Kubernetes control plane, a lab of node namespaces around
//! a BIRD router, the allocator in the router's namespace, an announcer in every node
//! namespace, the watcher beside kube-apiserver, and optionally Jaeger and a client namespace.
//! Tests drive it through Kubernetes objects only, as a user would, and look at the router.
//!
//! ```text
//!   root namespace                      router namespace (BIRD)           node-N namespaces
//!   kube-apiserver, etcd (loopback)     allocator 0.0.0.0:50051           announcer, BGP to
//!   watcher, the test  ---- veth /30 ---(Jaeger 0.0.0.0:4317/16686)------ 192.0.2.1; reach the
//!                      from 198.18.0.0/15  br0 192.0.2.1/24 -------------- allocator there
//! ```
//!
//! The watcher must stay in the root namespace (kube-apiserver listens on its loopback), so it
//! reaches the allocator over a veth pair of its own (see `host_link`). Everything is stopped
//! and deleted when the `Stack` drops, also when the test panics; every wait is bounded.

mod host_link;
pub mod kube_objects;
pub mod traffic;
pub mod wait;

use std::{
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::Path,
    time::Duration,
};

use anyhow::Context as _;
use k8s_openapi::api::{coordination::v1::Lease, core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams, PostParams},
};

pub use self::host_link::HostLink;
use self::kube_objects::{CONFIG_NAMESPACE, SERVICE_NAMESPACE, TrafficPolicy};
use crate::{
    bgp_routers::{Neighbor, Router, RouterConfig, RouterKind},
    child::ChildProcess,
    daemons::{Allocator, Daemon},
    grpcurl::{GrpcTarget, grpcurl},
    jaeger::Jaeger,
    kube_control_plane::ControlPlane,
    lab::{Lab, ROUTER_V4},
    ports::free_loopback_addr,
    prometheus::ScrapeJob,
    trust::{ANNOUNCER_ACCOUNT, NAMESPACE, READER_ACCOUNT, Trust, WATCHER_ACCOUNT},
};

/// The nodes' AS.
pub const NODE_ASN: u32 = 64512;
/// The router's AS when the sessions are eBGP.
pub const EBGP_ROUTER_ASN: u32 = 64500;
/// The allocator's gRPC port in the router's namespace.
pub const ALLOCATOR_PORT: u16 = 50051;
/// The announcers' HTTPS metrics port on their node address (with `StackOptions::scrape`), as
/// in deploy/announcer.yaml.
pub const ANNOUNCER_METRICS_PORT: u16 = 7474;
/// How long any one wait of the stack may take.
pub const WAIT: Duration = Duration::from_secs(30);

/// How many lines of each log a failure message shows.
const LOG_TAIL_LINES: usize = 40;

/// What to start.
#[derive(Clone, Debug)]
pub struct StackOptions {
    /// Node namespaces, each with an announcer: node-1 at 192.0.2.11, node-2 at .12, ...
    pub nodes: usize,
    /// iBGP (the router in the nodes' AS) instead of eBGP (the router in AS 64500).
    pub ibgp: bool,
    /// A client namespace behind the router (198.51.100.2), for real traffic.
    pub client: bool,
    /// A client namespace on the nodes' segment (192.0.2.100), for layer 2 mode.
    pub segment_client: bool,
    /// Jaeger in the router's namespace, with every daemon exporting its spans there.
    pub jaeger: bool,
    /// Replicas of the allocator and of the watcher (the watchers elect a leader; every
    /// component is given every allocator endpoint).
    pub replicas: usize,
    /// Where the processes log. Unset: a temporary directory removed with the stack; set (the
    /// demo): this directory, emptied first and kept afterwards for reading.
    pub log_dir: Option<std::path::PathBuf>,
    /// Every daemon's metrics in reach of a Prometheus in the router's namespace, as
    /// `scrape_jobs` lists them: the watchers' admin endpoints on the host link's root address
    /// instead of root loopback, and the announcers' HTTPS metrics on their node address (the
    /// allocators' admin endpoints are on the router namespace's loopback already).
    pub scrape: bool,
    /// BFD on the router's side of every session (BIRD's `bfd on`, MetalLB's default timers);
    /// a BGPPeer with a BFDProfile turns it on at the announcers.
    pub bfd: bool,
}

impl Default for StackOptions {
    fn default() -> Self {
        Self {
            nodes: 3,
            ibgp: false,
            client: false,
            segment_client: false,
            jaeger: false,
            replicas: 1,
            log_dir: None,
            scrape: false,
            bfd: false,
        }
    }
}

/// A node of the stack: its Kubernetes Node, its namespace, its announcer's address.
#[derive(Clone, Debug)]
pub struct StackNode {
    /// Node name: node-1, node-2, ...
    pub name: String,
    /// Its InternalIP and BGP next hop.
    pub address: Ipv4Addr,
    /// Its network namespace.
    pub namespace: String,
}

/// The running system. Fields drop in order: our daemons first, then Jaeger and the router,
/// the namespaces, the control plane, and last the directory of logs.
pub struct Stack {
    /// The watchers (root namespace), `watcher-1`, ... in the election.
    pub watchers: Vec<Daemon>,
    /// One announcer per node, in node order.
    pub announcers: Vec<Daemon>,
    /// The allocators (router namespace), on ports `ALLOCATOR_PORT`, +1, ...
    pub allocators: Vec<Allocator>,
    /// Jaeger (router namespace), if asked for; its query API is reached over the veth pair.
    pub jaeger: Option<Jaeger>,
    /// BIRD (router namespace).
    pub router: Router,
    link: HostLink,
    /// The namespaces.
    pub lab: Lab,
    /// kube-apiserver and etcd.
    pub control_plane: ControlPlane,
    client: kube::Client,
    nodes: Vec<StackNode>,
    router_asn: u32,
    /// The allocator's certificates and the tokens every daemon presents.
    pub trust: Trust,
    /// How each daemon was started, to start it again.
    starts: Starts,
    /// Whether `StackOptions::scrape` was set.
    scrape: bool,
    logs: LogDir,
}

/// Where the stack's processes log.
enum LogDir {
    /// Removed with the stack.
    Temporary(tempfile::TempDir),
    /// Kept.
    Kept(std::path::PathBuf),
}

impl LogDir {
    fn new(kept: Option<&Path>) -> anyhow::Result<Self> {
        Ok(match kept {
            None => Self::Temporary(tempfile::Builder::new().prefix("metallb-stack-").tempdir()?),
            Some(dir) => {
                // A previous run's logs would mix with this one's.
                if dir.exists() {
                    std::fs::remove_dir_all(dir)?;
                }
                std::fs::create_dir_all(dir)?;
                Self::Kept(dir.canonicalize()?)
            }
        })
    }

    fn path(&self) -> &Path {
        match self {
            Self::Temporary(dir) => dir.path(),
            Self::Kept(dir) => dir,
        }
    }
}

/// The arguments and environment each daemon of the stack was started with.
struct Starts {
    watcher_args: Vec<String>,
    watcher_env: Vec<(&'static str, String)>,
    announcer_args: Vec<Vec<String>>,
    announcer_env: Vec<(&'static str, String)>,
    allocator_env: Vec<(&'static str, String)>,
    /// Where the watchers' admin endpoints listen instead of root loopback.
    watcher_admin_ip: Option<Ipv4Addr>,
    /// Starts so far, numbering the logs of restarted daemons.
    count: std::sync::atomic::AtomicUsize,
}

impl Stack {
    /// Starts everything and waits until the watcher has made its first pass into the allocator
    /// and every announcer follows the allocator. No MetalLB configuration is applied yet:
    /// tests bring their own (see `v01_peers` and `bgp_peer_resource`).
    pub async fn start(options: StackOptions) -> anyhow::Result<Self> {
        let logs = LogDir::new(options.log_dir.as_deref())?;
        let control_plane = ControlPlane::start().await?;
        let watcher_kubeconfig = kube_objects::install_metallb(&control_plane).await?;
        let client = control_plane.client().await;
        let node_names: Vec<String> =
            (1..=options.nodes).map(|index| format!("node-{index}")).collect();
        let node_refs: Vec<&str> = node_names.iter().map(String::as_str).collect();
        let trust = Trust::new(&control_plane, &node_refs).await?;

        let mut lab = Lab::new(options.nodes)?;
        if options.client {
            lab.add_client()?;
        }
        if options.segment_client {
            lab.add_segment_client()?;
        }
        let link = HostLink::new(&lab.router)?;
        let router_asn = if options.ibgp { NODE_ASN } else { EBGP_ROUTER_ASN };
        let neighbor = |address| Neighbor { bfd: options.bfd, ..Neighbor::new(address, NODE_ASN) };
        let neighbors = lab.nodes.iter().map(|node| neighbor(IpAddr::V4(node.v4))).collect();
        let router = Router::start(
            RouterKind::Bird,
            &lab.router,
            &RouterConfig { asn: router_asn, router_id: ROUTER_V4, neighbors },
        )?;
        let jaeger = match options.jaeger {
            true => Some(Jaeger::start_in(&lab.router, link.namespace_address.into()).await?),
            false => None,
        };
        // Each daemon reaches Jaeger at the address its namespace routes to.
        let telemetry = |host: Ipv4Addr| -> Vec<(&str, String)> {
            let Some(jaeger) = &jaeger else { return Vec::new() };
            vec![
                (
                    "OTEL_EXPORTER_OTLP_ENDPOINT",
                    format!("http://{host}:{}", jaeger.otlp_grpc_port()),
                ),
                // Export within a fraction of a second instead of the default 5 s, so a test
                // finds the spans of a change without stopping the daemons.
                ("OTEL_BSP_SCHEDULE_DELAY", "200".into()),
            ]
        };

        let replicas = options.replicas.max(1);
        let ports: Vec<u16> = (0..replicas).map(|index| ALLOCATOR_PORT + index as u16).collect();
        let mut allocators = Vec::new();
        for (index, port) in ports.iter().enumerate() {
            let name = format!("metallb-allocator-{}", index + 1);
            let env = telemetry(ROUTER_V4);
            allocators.push(
                Allocator::start_as(&name, &lab.router, *port, &trust, &env, logs.path()).await?,
            );
        }
        let endpoints = |host: Ipv4Addr| {
            ports.iter().map(|port| format!("https://{host}:{port}")).collect::<Vec<_>>().join(",")
        };
        let nodes: Vec<StackNode> = lab
            .nodes
            .iter()
            .zip(1..)
            .map(|(node, index)| StackNode {
                name: format!("node-{index}"),
                address: node.v4,
                namespace: node.namespace.clone(),
            })
            .collect();
        for node in &nodes {
            kube_objects::create_node(&client, &node.name, node.address).await?;
        }
        let allocator_from_nodes = endpoints(ROUTER_V4);
        let mut announcers = Vec::new();
        let mut announcer_args = Vec::new();
        for node in &nodes {
            let token = trust.token_file(ANNOUNCER_ACCOUNT, Some(&node.name)).await?;
            let mut args = strings(&[
                "--node-name",
                &node.name,
                "--node-address",
                &node.address.to_string(),
                "--allocator-endpoint",
                &allocator_from_nodes,
                "--report-interval-seconds",
                "1",
            ]);
            args.extend(trust.client_args(&token));
            if options.scrape {
                // As deploy/announcer.yaml: tokens of the API server's audience (a Prometheus
                // pod's own), of the harness's reader account.
                let metrics_addr = SocketAddr::from((node.address, ANNOUNCER_METRICS_PORT));
                args.extend(strings(&[
                    "--metrics-https-addr",
                    &metrics_addr.to_string(),
                    "--metrics-reader-service-accounts",
                    &format!("{NAMESPACE}/{READER_ACCOUNT}"),
                    "--metrics-token-audience",
                    trust.issuer(),
                    "--token-issuer",
                    trust.issuer(),
                    "--jwks-file",
                    &trust.jwks_file().to_string_lossy(),
                ]));
            }
            let env = telemetry(ROUTER_V4);
            let namespace = Some(node.namespace.as_str());
            announcers.push(Daemon::start_in(
                namespace,
                "metallb-announcer",
                &args,
                &env,
                logs.path(),
            )?);
            announcer_args.push(args);
        }
        let mut args = strings(&[
            "--kubeconfig",
            &watcher_kubeconfig.to_string_lossy(),
            "--allocator-endpoint",
            &endpoints(link.namespace_address),
            "--config-namespace",
            CONFIG_NAMESPACE,
            // The harness's Trust stands in for the kubelet-mounted Secret and ConfigMap; the
            // watcher's own issuing is proven in tests/tests/allocator_tls.rs.
            "--manage-allocator-tls=false",
        ]);
        args.extend(trust.client_args(&trust.token_file(WATCHER_ACCOUNT, None).await?));
        let starts = Starts {
            watcher_args: args,
            watcher_env: telemetry(link.namespace_address),
            announcer_args,
            announcer_env: telemetry(ROUTER_V4),
            allocator_env: telemetry(ROUTER_V4),
            watcher_admin_ip: options.scrape.then_some(link.root_address),
            count: Default::default(),
        };
        let mut watchers = Vec::new();
        for index in 0..replicas {
            watchers.push(starts.watcher(index, logs.path())?);
        }

        let mut stack = Self {
            watchers,
            announcers,
            allocators,
            jaeger,
            router,
            link,
            lab,
            control_plane,
            client,
            nodes,
            router_asn,
            trust,
            starts,
            scrape: options.scrape,
            logs,
        };
        stack.wait_ready().await?;
        Ok(stack)
    }

    /// The watchers first: the allocator streams to announcers only after its first full sync.
    async fn wait_ready(&mut self) -> anyhow::Result<()> {
        let mut result = Ok(());
        for watcher in &mut self.watchers {
            if result.is_ok() {
                result = watcher.wait_ready().await;
            }
        }
        for announcer in &mut self.announcers {
            if result.is_ok() {
                result = announcer.wait_ready().await;
            }
        }
        result.map_err(|err| {
            anyhow::anyhow!("the stack did not start: {err}\n{}", self.diagnostics())
        })
    }

    /// The first watcher (the only one with one replica).
    pub fn watcher(&self) -> &Daemon {
        &self.watchers[0]
    }

    /// The first allocator (the only one with one replica).
    pub fn allocator(&self) -> &Allocator {
        &self.allocators[0]
    }

    /// The index in `watchers` of the one holding the Lease (`watcher-{index + 1}`).
    pub async fn leading_watcher(&self) -> anyhow::Result<usize> {
        let leases: Api<Lease> = Api::namespaced(self.client.clone(), CONFIG_NAMESPACE);
        self.eventually("a watcher holding the Lease", || async {
            let holder = leases.get("metallb-watcher").await.ok()?.spec?.holder_identity?;
            let number: usize = holder.strip_prefix("watcher-")?.parse().ok()?;
            number.checked_sub(1)
        })
        .await
    }

    /// Starts watcher `index` again (after a kill), with a log of its own.
    pub fn restart_watcher(&mut self, index: usize) -> anyhow::Result<()> {
        self.watchers[index] = self.starts.watcher(index, self.logs.path())?;
        Ok(())
    }

    /// Starts allocator `index` again on its port (after a kill), with a log of its own, and
    /// waits until it is live.
    pub async fn restart_allocator(&mut self, index: usize) -> anyhow::Result<()> {
        let name = format!("metallb-allocator-{}.{}", index + 1, self.starts.next());
        let port = ALLOCATOR_PORT + index as u16;
        let env = &self.starts.allocator_env;
        self.allocators[index] =
            Allocator::start_as(&name, &self.lab.router, port, &self.trust, env, self.logs.path())
                .await?;
        Ok(())
    }

    /// Starts the announcer of node `index` again (after a kill), with a log of its own.
    pub fn restart_announcer(&mut self, index: usize) -> anyhow::Result<()> {
        let name = format!("metallb-announcer-{}.{}", self.nodes[index].name, self.starts.next());
        self.announcers[index] = Daemon::start_as(
            &name,
            Some(&self.nodes[index].namespace),
            "metallb-announcer",
            &self.starts.announcer_args[index],
            &self.starts.announcer_env,
            self.logs.path(),
        )?;
        Ok(())
    }

    /// The nodes, in order.
    pub fn nodes(&self) -> &[StackNode] {
        &self.nodes
    }

    /// The node called `name`.
    pub fn node(&self, name: &str) -> anyhow::Result<&StackNode> {
        self.nodes.iter().find(|node| node.name == name).with_context(|| format!("no node {name}"))
    }

    /// The router's AS.
    pub fn router_asn(&self) -> u32 {
        self.router_asn
    }

    /// A kube client with admin rights.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// Where every process logs (removed with the stack unless `StackOptions::log_dir` named it).
    pub fn log_dir(&self) -> &Path {
        self.logs.path()
    }

    /// The allocator's gRPC address as the test process (and the watcher) reach it.
    pub fn allocator_addr(&self) -> SocketAddr {
        SocketAddr::from((self.link.namespace_address, ALLOCATOR_PORT))
    }

    /// Allocator `index` for grpcurl from the root namespace, called as the watcher.
    pub fn allocator_target(&self, index: usize) -> GrpcTarget {
        let addr = SocketAddr::from((self.link.namespace_address, ALLOCATOR_PORT + index as u16));
        GrpcTarget { addr, ..self.allocators[index].target() }
    }

    /// The router's address on the veth pair to the root namespace.
    pub fn router_address_from_root(&self) -> Ipv4Addr {
        self.link.namespace_address
    }

    /// What a Prometheus in the router's namespace scrapes (`StackOptions::scrape`): jobs
    /// `metallb-allocator` (admin endpoints on that namespace's loopback), `metallb-watcher`
    /// (admin endpoints on the host link's root address) and `metallb-announcer` (HTTPS on each
    /// node's address, with a token of the reader account written into the log directory).
    pub async fn scrape_jobs(&self) -> anyhow::Result<Vec<ScrapeJob>> {
        anyhow::ensure!(self.scrape, "the daemons are out of reach: set StackOptions::scrape");
        let token = self.trust.token(READER_ACCOUNT, None, self.trust.issuer(), "2h").await?;
        let token_file = self.log_dir().join("prometheus-token");
        std::fs::write(&token_file, token)?;
        let admin = |daemons: Vec<&Daemon>| -> Vec<SocketAddr> {
            daemons.iter().map(|daemon| daemon.admin_addr()).collect()
        };
        Ok(vec![
            ScrapeJob {
                name: "metallb-allocator".into(),
                targets: admin(self.allocators.iter().map(|a| &a.daemon).collect()),
                bearer_token_file: None,
            },
            ScrapeJob {
                name: "metallb-watcher".into(),
                targets: admin(self.watchers.iter().collect()),
                bearer_token_file: None,
            },
            ScrapeJob {
                name: "metallb-announcer".into(),
                targets: self
                    .nodes
                    .iter()
                    .map(|node| SocketAddr::from((node.address, ANNOUNCER_METRICS_PORT)))
                    .collect(),
                bearer_token_file: Some(token_file),
            },
        ])
    }

    /// The `peers:` section of a v0.1 ConfigMap naming the router.
    pub fn v01_peers(&self) -> String {
        format!(
            "peers:\n- my-asn: {NODE_ASN}\n  peer-asn: {}\n  peer-address: {ROUTER_V4}\n",
            self.router_asn
        )
    }

    /// A metallb.io BGPPeer naming the router, as YAML.
    pub fn bgp_peer_resource(&self) -> String {
        format!(
            "apiVersion: metallb.io/v1beta2\nkind: BGPPeer\nmetadata:\n  name: router\n  namespace: {CONFIG_NAMESPACE}\nspec:\n  myASN: {NODE_ASN}\n  peerASN: {}\n  peerAddress: {ROUTER_V4}\n",
            self.router_asn
        )
    }

    /// Creates or replaces the v0.1 ConfigMap with `text`.
    pub async fn apply_config_map(&self, text: &str) -> anyhow::Result<()> {
        kube_objects::apply_config_map(&self.client, text).await
    }

    /// Applies manifests (e.g. metallb.io resources) server-side.
    pub async fn apply_yaml(&self, yaml: &str) -> anyhow::Result<()> {
        self.control_plane.apply_yaml(yaml).await
    }

    fn services(&self) -> Api<Service> {
        Api::namespaced(self.client.clone(), SERVICE_NAMESPACE)
    }

    /// Creates LoadBalancer Service `name` (default namespace, TCP port 80).
    pub async fn create_load_balancer(
        &self,
        name: &str,
        policy: TrafficPolicy,
    ) -> anyhow::Result<()> {
        let service = kube_objects::load_balancer(name, None, policy);
        self.services().create(&PostParams::default(), &service).await?;
        Ok(())
    }

    /// Merge-patches Service `name`, e.g. `{"spec": {"externalTrafficPolicy": "Local"}}`.
    pub async fn patch_service(&self, name: &str, patch: serde_json::Value) -> anyhow::Result<()> {
        self.services().patch(name, &PatchParams::default(), &Patch::Merge(patch)).await?;
        Ok(())
    }

    /// Deletes Service `name`.
    pub async fn delete_service(&self, name: &str) -> anyhow::Result<()> {
        self.services().delete(name, &DeleteParams::default()).await?;
        Ok(())
    }

    /// Creates or replaces the EndpointSlice of Service `service`: one ready endpoint on each of
    /// `nodes`, as the EndpointSlice controller would make it for pods there.
    pub async fn set_endpoints(&self, service: &str, nodes: &[&str]) -> anyhow::Result<()> {
        let api: Api<EndpointSlice> = Api::namespaced(self.client.clone(), SERVICE_NAMESPACE);
        kube_objects::apply(&api, &kube_objects::endpoint_slice(service, nodes)).await
    }

    /// The first IP of Service `name`'s status.loadBalancer.ingress.
    pub async fn ingress(&self, name: &str) -> Option<String> {
        kube_objects::ingress(&self.client, name).await
    }

    /// Waits until Service `name` shows `ip` in its status.
    pub async fn wait_for_ingress(&self, name: &str, ip: &str) -> anyhow::Result<()> {
        let what = format!("{name} given {ip} in its status");
        self.eventually(&what, || async {
            (self.ingress(name).await.as_deref() == Some(ip)).then_some(())
        })
        .await
    }

    /// Notes of the Events with `reason` about `object` in `namespace`.
    pub async fn event_notes(&self, namespace: &str, object: &str, reason: &str) -> Vec<String> {
        kube_objects::event_notes(&self.client, namespace, object, reason).await
    }

    /// Waits for an Event with `reason` about `object` in `namespace` whose note contains
    /// `note_part`; returns the note.
    pub async fn wait_for_event(
        &self,
        namespace: &str,
        object: &str,
        reason: &str,
        note_part: &str,
    ) -> anyhow::Result<String> {
        let what = format!("an Event {reason} about {namespace}/{object} saying {note_part:?}");
        self.eventually(&what, || async {
            let notes = self.event_notes(namespace, object, reason).await;
            notes.into_iter().find(|note| note.contains(note_part))
        })
        .await
    }

    /// Waits until the watcher's ConfigurationState says `result` ("Valid", "Invalid"); returns
    /// its error summary.
    pub async fn wait_for_configuration_state(&self, result: &str) -> anyhow::Result<String> {
        let what = format!("the ConfigurationState {result}");
        self.eventually(&what, || kube_objects::configuration_state(&self.control_plane, result))
            .await
    }

    /// Calls `metallb.v1.Allocator/<method>` with grpcurl from the root namespace.
    pub fn allocator_call(&self, method: &str, data: &str) -> anyhow::Result<serde_json::Value> {
        let method = format!("metallb.v1.Allocator/{method}");
        let target = GrpcTarget { addr: self.allocator_addr(), ..self.allocator().target() };
        let out = grpcurl(&target, Some(data), &[&method])?;
        anyhow::ensure!(out.code == 0, "{method}: {out:?}");
        Ok(serde_json::from_str(&out.stdout)?)
    }

    /// Waits until the router holds an Established session with every node.
    pub async fn wait_for_sessions(&self) -> anyhow::Result<()> {
        self.eventually("BGP sessions Established with every node", || async {
            let all = self
                .nodes
                .iter()
                .all(|node| self.router.established(IpAddr::V4(node.address)).unwrap_or(false));
            all.then_some(())
        })
        .await
    }

    /// Next hops of the router's kernel route to `ip` (sorted; empty when there is none).
    pub fn router_next_hops(&self, ip: &str) -> anyhow::Result<Vec<IpAddr>> {
        let routes = Lab::kernel_routes(&self.lab.router, "-4")?;
        let route = routes.into_iter().find(|route| route.destination == ip);
        Ok(route.map(|route| route.next_hops).unwrap_or_default())
    }

    /// Waits until the router's kernel routes `ip` via exactly `nodes` (none: withdrawn).
    pub async fn wait_for_router_next_hops(&self, ip: &str, nodes: &[&str]) -> anyhow::Result<()> {
        let mut expected = Vec::new();
        for name in nodes {
            expected.push(IpAddr::V4(self.node(name)?.address));
        }
        expected.sort();
        let what = format!("routing {ip} via {nodes:?} ({expected:?}) at the router");
        self.eventually(&what, || async {
            (self.router_next_hops(ip).ok()? == expected).then_some(())
        })
        .await
    }

    /// Puts `addr`'s IP on node `node`'s loopback and serves the node's name on it over TCP;
    /// the server stops when the handle drops.
    pub fn serve(&self, node: &str, addr: SocketAddr) -> anyhow::Result<ChildProcess> {
        let node = self.node(node)?;
        traffic::serve(&node.namespace, addr, &node.name, self.log_dir())
    }

    /// Connects from the client namespace to `addr`; returns the answering node's name.
    pub fn connect_from_client(&self, addr: SocketAddr) -> anyhow::Result<String> {
        let client = self.lab.client.as_deref().context("no client: set StackOptions::client")?;
        traffic::connect(client, addr)
    }

    /// The segment client's namespace.
    pub fn segment_client(&self) -> anyhow::Result<&str> {
        self.lab
            .segment_client
            .as_deref()
            .context("no segment client: set StackOptions::segment_client")
    }

    /// Connects from the segment client to `addr`; returns the answering node's name.
    pub fn connect_from_segment(&self, addr: SocketAddr) -> anyhow::Result<String> {
        traffic::connect(self.segment_client()?, addr)
    }

    /// The node whose `eth0` has `mac`.
    pub fn node_with_mac(&self, mac: &str) -> Option<String> {
        self.nodes.iter().find_map(|node| {
            let own = Lab::mac_of(&node.namespace).ok()?;
            own.eq_ignore_ascii_case(mac).then(|| node.name.clone())
        })
    }

    /// Polls `check` for at most `WAIT`; on timeout the error carries `diagnostics`.
    pub async fn eventually<T, F: Future<Output = Option<T>>>(
        &self,
        what: &str,
        check: impl FnMut() -> F,
    ) -> anyhow::Result<T> {
        wait::eventually(what, WAIT, check)
            .await
            .map_err(|err| anyhow::anyhow!("{err}\n{}", self.diagnostics()))
    }

    /// The last lines of every daemon's log and what the router says, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        let watchers =
            self.watchers.iter().enumerate().map(|(i, d)| (format!("watcher-{}", i + 1), d));
        let allocators = self
            .allocators
            .iter()
            .enumerate()
            .map(|(i, a)| (format!("allocator-{}", i + 1), &a.daemon));
        let announcers = self.nodes.iter().zip(&self.announcers);
        let named = announcers.map(|(node, daemon)| (node.name.clone(), daemon));
        for (name, daemon) in watchers.chain(allocators).chain(named) {
            text.push_str(&format!("--- {name} (last lines)\n{}\n", tail(&daemon.log())));
        }
        text.push_str(&format!("--- router\n{}", self.router.describe()));
        text
    }
}

fn strings(args: &[&str]) -> Vec<String> {
    args.iter().map(|arg| arg.to_string()).collect()
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

impl Starts {
    /// Watcher `index`, as `watcher-{index + 1}` in the election.
    fn watcher(&self, index: usize, log_dir: &Path) -> anyhow::Result<Daemon> {
        let identity = format!("watcher-{}", index + 1);
        let mut args = self.watcher_args.clone();
        args.extend(["--leader-identity".to_string(), identity.clone()]);
        let name = format!("metallb-{identity}.{}", self.next());
        let (binary, env) = ("metallb-watcher", &self.watcher_env);
        match self.watcher_admin_ip {
            Some(ip) => {
                let admin_addr = SocketAddr::from((ip, free_loopback_addr().port()));
                Daemon::start_with_admin(&name, None, admin_addr, binary, &args, env, log_dir)
            }
            None => Daemon::start_as(&name, None, binary, &args, env, log_dir),
        }
    }

    fn next(&self) -> usize {
        self.count.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    }
}
