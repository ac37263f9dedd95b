//! `amber serve`: host the built-in object classes over HTTP and
//! WebSockets until SIGINT or SIGTERM, then shut down gracefully.

use std::net::SocketAddr;
use std::time::Duration;

use amber::runtime::{Runtime, RuntimeConfig};
use amber::{Config, Error, ErrorKind, Store};

pub(crate) struct ServeArgs {
    pub listen: SocketAddr,
    pub workers: Option<usize>,
    pub idle_timeout_secs: Option<u64>,
    pub sync_threads: usize,
}

pub(crate) fn run(mut config: Config, args: ServeArgs) -> Result<(), Error> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let data = config.data_dir.clone();
    // Many objects commit at once under a server's load; more fsyncs in
    // flight lets the file system fold them into fewer journal flushes.
    config.sync_threads = args.sync_threads.max(1);
    let store = Store::open(config)?;
    let mut cfg = RuntimeConfig::default();
    if let Some(w) = args.workers {
        cfg.workers = w;
    }
    if let Some(s) = args.idle_timeout_secs {
        cfg.idle_timeout = Duration::from_secs(s);
    }
    let rt = amber::server::with_builtin_classes(Runtime::builder(store))
        .config(cfg)
        .start()?;
    let tokio_rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("amber-http")
        .build()
        .map_err(|e| Error::new(ErrorKind::Io, format!("start tokio: {e}")))?;
    tokio_rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .map_err(|e| Error::new(ErrorKind::Io, format!("listen on {}: {e}", args.listen)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::new(ErrorKind::Io, format!("listener address: {e}")))?;
        eprintln!(
            "amber: serving {} on http://{addr} (try: curl -X POST http://{addr}/counter/demo/increment)",
            data.display(),
        );
        amber::server::serve(rt, listener, amber::server::shutdown_signal()).await
    })
}
