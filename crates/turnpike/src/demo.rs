//! `turnpike demo`: small in-memory JSON services (users, orders, products, and an inventory service run as three
//! instances, one of which fails every second request) for the gateway to front.
//!
//! The services share one static catalog, so every id they hand out refers to something that exists: an order's
//! `user_id` is a user, its items' `product_id`s are products. Orders created with `POST /orders` live in memory
//! until the process exits. The gateway config in front of them is [`CONFIG`] (`examples/demo.yaml`).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::header::{ALLOW, CONTENT_LENGTH, CONTENT_TYPE, LOCATION};
use http::{HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// The gateway configuration of the demo: the `public` listener on 127.0.0.1:8080 and one route per service.
pub const CONFIG: &str = include_str!("../../../examples/demo.yaml");

/// Where the admin listener serves metrics and health (`server.admin` in [`CONFIG`]).
pub const ADMIN_ADDR: &str = "127.0.0.1:9901";
/// Where the users service listens (the `users` upstream in [`CONFIG`]).
pub const USERS_ADDR: &str = "127.0.0.1:9101";
/// Where the orders service listens (the `orders` upstream in [`CONFIG`]).
pub const ORDERS_ADDR: &str = "127.0.0.1:9102";
/// Where the products service listens (the `products` upstream in [`CONFIG`]).
pub const PRODUCTS_ADDR: &str = "127.0.0.1:9103";
/// Where the three inventory instances listen (the `inventory` upstream in [`CONFIG`]); the third one fails every
/// second request, for the gateway's retries and outlier ejection to hide.
pub const INVENTORY_ADDRS: [&str; 3] = ["127.0.0.1:9104", "127.0.0.1:9105", "127.0.0.1:9106"];

/// The HS256 secret of the `demo-jwt` policy in [`CONFIG`] (a test keeps them equal). Demo only: a secret in a
/// config file that is printed on a terminal protects nothing.
pub const DEMO_JWT_SECRET: &str = "turnpike-demo-secret-not-for-production-use";
/// The `iss` the `demo-jwt` policy requires.
pub const DEMO_JWT_ISSUER: &str = "https://demo.turnpike.local";
/// The `aud` the `demo-jwt` policy requires.
pub const DEMO_JWT_AUDIENCE: &str = "turnpike-demo";

/// A demo token for user `u-1001`, valid for `ttl`: what an identity provider would issue after a login.
pub fn demo_token(ttl: Duration) -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    signed_demo_token(now, now + ttl.as_secs())
}

fn signed_demo_token(now: u64, exp: u64) -> String {
    let claims = json!({
        "iss": DEMO_JWT_ISSUER,
        "aud": DEMO_JWT_AUDIENCE,
        "sub": "u-1001",
        "email": "amara.okafor@example.com",
        "roles": ["customer"],
        "scope": "orders:read profile",
        "iat": now,
        "exp": exp,
    });
    let key = jsonwebtoken::EncodingKey::from_secret(DEMO_JWT_SECRET.as_bytes());
    jsonwebtoken::encode(&jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256), &claims, &key).unwrap_or_default()
}

/// The largest request body a service reads; larger ones get 413.
const MAX_BODY: usize = 64 * 1024;
/// The most items one order may list.
const MAX_ITEMS: usize = 100;
/// The largest quantity of one item.
const MAX_QUANTITY: u64 = 1000;
/// The most orders kept in memory; creating more gets 503, so a loop of POSTs cannot exhaust memory.
const MAX_ORDERS: usize = 10_000;
/// The most characters of a client-supplied id repeated back in an error.
const MAX_ECHO: usize = 64;

/// The three demo services, running on the tokio runtime that started them. Dropping it stops them (their accept
/// loops and open connections).
#[derive(Debug)]
pub struct DemoServices {
    users: SocketAddr,
    orders: SocketAddr,
    products: SocketAddr,
    inventory: [SocketAddr; 3],
    tasks: Vec<JoinHandle<()>>,
}

impl DemoServices {
    /// The address the users service is bound to.
    pub fn users(&self) -> SocketAddr {
        self.users
    }

    /// The address the orders service is bound to.
    pub fn orders(&self) -> SocketAddr {
        self.orders
    }

    /// The address the products service is bound to.
    pub fn products(&self) -> SocketAddr {
        self.products
    }

    /// The addresses the inventory instances are bound to (the last one is the flaky one).
    pub fn inventory(&self) -> [SocketAddr; 3] {
        self.inventory
    }
}

impl Drop for DemoServices {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// Binds the three services (on the given addresses; port 0 allowed for tests) and serves them on the current tokio
/// runtime. Fails, with the service and address in the message, if an address cannot be bound; nothing is left
/// running then.
pub async fn start(
    users: SocketAddr,
    orders: SocketAddr,
    products: SocketAddr,
    inventory: [SocketAddr; 3],
) -> std::io::Result<DemoServices> {
    // Bind all of them before serving any, so a failure leaves nothing behind.
    let users_listener = bind("users", users).await?;
    let orders_listener = bind("orders", orders).await?;
    let products_listener = bind("products", products).await?;
    let mut inventory_listeners = Vec::new();
    for addr in inventory {
        inventory_listeners.push(bind("inventory", addr).await?);
    }
    let addrs = (users_listener.local_addr()?, orders_listener.local_addr()?, products_listener.local_addr()?);
    let mut inventory = inventory;
    for (slot, listener) in inventory.iter_mut().zip(&inventory_listeners) {
        *slot = listener.local_addr()?;
    }
    let store = Arc::new(OrderStore::seeded());
    let mut tasks = vec![
        tokio::spawn(serve(users_listener, Service::Users)),
        tokio::spawn(serve(orders_listener, Service::Orders(store))),
        tokio::spawn(serve(products_listener, Service::Products)),
    ];
    for (instance, listener) in inventory_listeners.into_iter().enumerate() {
        let flaky = (instance == 2).then(|| AtomicU64::new(0));
        tasks.push(tokio::spawn(serve(listener, Service::Inventory { instance, flaky })));
    }
    let services = DemoServices { users: addrs.0, orders: addrs.1, products: addrs.2, inventory, tasks };
    tracing::info!(
        users = %services.users(),
        orders = %services.orders(),
        products = %services.products(),
        inventory = ?services.inventory(),
        "demo services started"
    );
    Ok(services)
}

/// The text printed after startup: what runs where, and curl commands to try.
pub fn banner(gateway: SocketAddr, admin: SocketAddr, token: &str) -> String {
    let base = format!("http://{gateway}/api");
    let admin = format!("http://{admin}");
    let post = r#"'{"user_id": "u-1001", "items": [{"product_id": "p-2001", "quantity": 2}]}'"#;
    let [inv0, inv1, inv2] = INVENTORY_ADDRS;
    let (inv1, inv2) = (port_of(inv1), port_of(inv2));
    format!(
        "Turnpike demo is running.\n\
         \n\
         \x20 gateway   http://{gateway}   (config: examples/demo.yaml)\n\
         \x20 users     http://{USERS_ADDR}   GET /users, /users/{{id}}\n\
         \x20 orders    http://{ORDERS_ADDR}   GET /orders, /orders/{{id}}, POST /orders\n\
         \x20 products  http://{PRODUCTS_ADDR}   GET /products, /products/{{id}}\n\
         \x20 inventory http://{inv0}, :{inv1}, :{inv2}   GET /inventory, /inventory/{{id}} (the last fails every 2nd request)\n\
         \n\
         Try it through the gateway (-i shows the headers, x-served-by says which service answered):\n\
         \n\
         \x20 curl -i {base}/users\n\
         \x20 curl -i {base}/users/u-1001\n\
         \x20 curl -i {base}/orders\n\
         \x20 curl -i '{base}/orders?user_id=u-1001'\n\
         \x20 curl -i {base}/orders/o-3001\n\
         \x20 curl -i {base}/products\n\
         \x20 curl -i {base}/products/p-2001\n\
         \x20 curl -i {base}/inventory\n\
         \x20 curl -i -X POST {base}/orders -H 'content-type: application/json' \\\n\
         \x20      -d {post}\n\
         \n\
         Who am I? /api/me needs a bearer JWT. Here is one for user u-1001, valid for 24 hours (HS256, signed with\n\
         the demo secret in examples/demo.yaml); the gateway verifies it and tells the users service who called:\n\
         \n\
         \x20 TOKEN={token}\n\
         \x20 curl -i {base}/me -H \"Authorization: Bearer $TOKEN\"\n\
         \x20 curl -i {base}/me                              # no token: 401 with WWW-Authenticate\n\
         \x20 curl -i {base}/me -H 'X-User-Id: admin'        # a spoofed identity header is removed: still 401\n\
         \n\
         Inventory runs on three instances and one of them fails every second request; the gateway retries on\n\
         another instance and ejects the failing one, so clients never see an error (the access log shows the\n\
         attempts):\n\
         \n\
         \x20 for i in $(seq 20); do curl -s -o /dev/null -w '%{{http_code}} ' {base}/inventory; done; echo\n\
         \n\
         Products are rate limited per client (5 per 10 s, token bucket): the RateLimit header counts down, the\n\
         sixth quick call gets 429 with Retry-After, and a token comes back every 2 s:\n\
         \n\
         \x20 for i in $(seq 7); do curl -s -o /dev/null -D - {base}/products | grep -iE '^(HTTP|ratelimit:|retry-after)'; done\n\
         \n\
         Operations, on the admin listener (loopback only): Prometheus metrics, liveness, readiness, status:\n\
         \n\
         \x20 curl -s {admin}/metrics | grep turnpike_http_requests_total\n\
         \x20 curl -i {admin}/healthz\n\
         \x20 curl -i {admin}/readyz\n\
         \x20 curl -s {admin}/status\n\
         \n\
         Press Ctrl-C to stop.\n"
    )
}

fn port_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(_, port)| port)
}

async fn bind(name: &str, addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr)
        .await
        .map_err(|err| std::io::Error::new(err.kind(), format!("cannot bind the {name} demo service on {addr}: {err}")))
}

/// Which service a listener serves; the orders service owns the order store.
enum Service {
    Users,
    Orders(Arc<OrderStore>),
    Products,
    /// One of the inventory instances; `flaky` counts the requests of the one that fails every second one.
    Inventory {
        instance: usize,
        flaky: Option<AtomicU64>,
    },
}

impl Service {
    fn name(&self) -> &'static str {
        match self {
            Service::Users => "users",
            Service::Orders(_) => "orders",
            Service::Products => "products",
            Service::Inventory { instance, .. } => ["inventory-1", "inventory-2", "inventory-3"][*instance % 3],
        }
    }
}

/// Accepts connections until the task is aborted; aborting it drops the `JoinSet`, which aborts every connection.
async fn serve(listener: TcpListener, service: Service) {
    let service = Arc::new(service);
    let mut connections = JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _peer)) => stream,
            Err(err) => {
                // Usually out of file descriptors: back off instead of spinning.
                tracing::warn!(service = service.name(), error = %err, "demo service cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let service = Arc::clone(&service);
        connections.spawn(async move {
            let handler = service_fn(move |req| {
                let service = Arc::clone(&service);
                async move { Ok::<_, Infallible>(handle(&service, req).await) }
            });
            if let Err(err) = http1::Builder::new().serve_connection(TokioIo::new(stream), handler).await {
                tracing::debug!(error = %err, "demo service connection ended with an error");
            }
        });
    }
}

type Reply = Response<Full<Bytes>>;

/// Answers one request, and says which service did.
async fn handle(service: &Service, req: Request<Incoming>) -> Reply {
    let mut reply = route(service, req).await;
    reply.headers_mut().insert("x-served-by", HeaderValue::from_static(service.name()));
    reply
}

async fn route(service: &Service, req: Request<Incoming>) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
    match (service, segments.as_slice()) {
        (_, ["health"]) => read(&method, &path, || json(StatusCode::OK, &json!({ "status": "ok" }))),
        (Service::Users, ["me"]) => read(&method, &path, || me(&req)),
        (Service::Users, ["users"]) => read(&method, &path, || list("users", USERS)),
        (Service::Users, ["users", id]) => read(&method, &path, || match USERS.iter().find(|u| u.id == *id) {
            Some(user) => json(StatusCode::OK, user),
            None => not_found("user", id, &path),
        }),
        (Service::Products, ["products"]) => read(&method, &path, || list("products", PRODUCTS)),
        (Service::Products, ["products", id]) => read(&method, &path, || match product(id) {
            Some(product) => json(StatusCode::OK, product),
            None => not_found("product", id, &path),
        }),
        (Service::Orders(store), ["orders"]) => match method {
            Method::GET | Method::HEAD => {
                let user_id = req.uri().query().and_then(|q| query_param(q, "user_id"));
                let orders = store.list(user_id.as_deref());
                list("orders", &orders)
            }
            Method::POST => create_order(store, req, &path).await,
            _ => method_not_allowed("GET, HEAD, POST", &path),
        },
        (Service::Inventory { flaky, .. }, ["inventory", rest @ ..]) if rest.len() <= 1 => {
            // The flaky instance fails every second request, as an overloaded replica would.
            if flaky.as_ref().is_some_and(|n| n.fetch_add(1, Ordering::Relaxed) % 2 == 1) {
                return problem(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "this inventory instance is overloaded (demo: it fails every second request)",
                    &path,
                );
            }
            read(&method, &path, || match rest.first() {
                None => {
                    let stock: Vec<Value> = PRODUCTS.iter().map(|p| stock(p.id)).collect();
                    json(
                        StatusCode::OK,
                        &json!({ "inventory": stock, "count": stock.len(), "instance": service.name() }),
                    )
                }
                Some(id) => match product(id) {
                    Some(p) => json(StatusCode::OK, &stock(p.id)),
                    None => not_found("product", id, &path),
                },
            })
        }
        (Service::Orders(store), ["orders", id]) => read(&method, &path, || match store.get(id) {
            Some(order) => json(StatusCode::OK, &order),
            None => not_found("order", id, &path),
        }),
        _ => problem(StatusCode::NOT_FOUND, format!("nothing is served at `{}`", echo(&path)), &path),
    }
}

/// The stock of a product: the same on every inventory instance (they are replicas of one service).
fn stock(product_id: &str) -> Value {
    let units = product_id.bytes().fold(7u64, |acc, b| (acc * 31 + u64::from(b)) % 97);
    json!({ "product_id": product_id, "units": units, "warehouse": "demo-1" })
}

/// `GET /me`: who the gateway says the caller is, read from the identity headers it set (this service trusts
/// them because the gateway removes whatever a client sends under those names), and the matching user profile.
fn me(req: &Request<Incoming>) -> Reply {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let list = |name: &str, sep: char| {
        header(name)
            .map(|v| v.split(sep).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect::<Vec<_>>())
    };
    let Some(user_id) = header("x-user-id") else {
        return problem(
            StatusCode::UNAUTHORIZED,
            "no identity: this endpoint is only reachable through the gateway",
            "/me",
        );
    };
    let user = USERS.iter().find(|u| u.id == user_id);
    json(
        StatusCode::OK,
        &json!({
            "received_from_gateway": {
                "x-user-id": user_id,
                "x-user-roles": list("x-user-roles", ','),
                "x-user-scopes": list("x-user-scopes", ' '),
                "x-auth-method": header("x-auth-method"),
                "x-consumer-id": header("x-consumer-id"),
                "x-consumer-plan": header("x-consumer-plan"),
                "x-user-email": header("x-user-email"),
            },
            "user": user,
        }),
    )
}

/// Answers a read-only resource: GET (and HEAD) with `answer`, anything else with 405.
fn read(method: &Method, path: &str, answer: impl FnOnce() -> Reply) -> Reply {
    match *method {
        Method::GET | Method::HEAD => answer(),
        _ => method_not_allowed("GET, HEAD", path),
    }
}

/// A collection: `{"<name>": [...], "count": n}`.
fn list<T: Serialize>(name: &str, items: &[T]) -> Reply {
    let mut body = Map::new();
    body.insert(name.to_owned(), serde_json::to_value(items).unwrap_or_default());
    body.insert("count".to_owned(), items.len().into());
    json(StatusCode::OK, &body)
}

async fn create_order(store: &OrderStore, req: Request<Incoming>, path: &str) -> Reply {
    let body = match read_body(req, path).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    let new = match validate(&body) {
        Ok(new) => new,
        Err(Invalid { status, detail, errors }) => return problem_with(status, detail, path, errors),
    };
    let Some(order) = store.create(new) else {
        return problem(StatusCode::SERVICE_UNAVAILABLE, "the demo keeps at most 10000 orders; restart it", path);
    };
    let mut reply = json(StatusCode::CREATED, &order);
    if let Ok(location) = HeaderValue::from_str(&format!("/api/orders/{}", order.id)) {
        reply.headers_mut().insert(LOCATION, location);
    }
    reply
}

/// Reads a request body of at most [`MAX_BODY`] bytes.
async fn read_body(req: Request<Incoming>, path: &str) -> Result<Bytes, Reply> {
    let too_large = || problem(StatusCode::PAYLOAD_TOO_LARGE, format!("the body is over {MAX_BODY} bytes"), path);
    let announced = req.headers().get(CONTENT_LENGTH).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if announced.is_some_and(|len| len > MAX_BODY as u64) {
        return Err(too_large());
    }
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(err) if err.is::<LengthLimitError>() => Err(too_large()),
        Err(_) => Err(problem(StatusCode::BAD_REQUEST, "the request body could not be read", path)),
    }
}

/// A validated `POST /orders` body.
struct NewOrder {
    user_id: String,
    items: Vec<(String, u64)>,
}

/// Why a `POST /orders` body was refused: 400 for its shape, 422 for what it refers to.
struct Invalid {
    status: StatusCode,
    detail: String,
    errors: Vec<Value>,
}

/// One entry of a problem's `errors`: where (a JSON pointer into the request body) and what.
fn field_error(pointer: String, detail: String) -> Value {
    json!({ "pointer": pointer, "detail": detail })
}

/// Checks a `POST /orders` body: its shape first (400), then that its user and products exist (422). Reports every
/// problem at once.
fn validate(body: &[u8]) -> Result<NewOrder, Invalid> {
    let bad_request = |detail: String, errors| Invalid { status: StatusCode::BAD_REQUEST, detail, errors };
    let value: Value = serde_json::from_slice(body)
        .map_err(|err| bad_request(format!("the body is not valid JSON: {err}"), Vec::new()))?;
    let Value::Object(object) = value else {
        return Err(bad_request("the body must be a JSON object with `user_id` and `items`".into(), Vec::new()));
    };
    let mut errors = Vec::new();
    let user_id = match object.get("user_id") {
        Some(Value::String(id)) => Some(id.clone()),
        Some(_) => {
            errors.push(field_error("/user_id".into(), "must be a string".into()));
            None
        }
        None => {
            errors.push(field_error("/user_id".into(), "is required".into()));
            None
        }
    };
    let mut items = Vec::new();
    match object.get("items") {
        Some(Value::Array(list)) if list.is_empty() => {
            errors.push(field_error("/items".into(), "must list at least one item".into()));
        }
        Some(Value::Array(list)) if list.len() > MAX_ITEMS => {
            errors.push(field_error("/items".into(), format!("must list at most {MAX_ITEMS} items")));
        }
        Some(Value::Array(list)) => {
            for (i, item) in list.iter().enumerate() {
                let Value::Object(item) = item else {
                    errors.push(field_error(format!("/items/{i}"), "must be an object".into()));
                    continue;
                };
                let product_id = match item.get("product_id") {
                    Some(Value::String(id)) => Some(id.clone()),
                    Some(_) => {
                        errors.push(field_error(format!("/items/{i}/product_id"), "must be a string".into()));
                        None
                    }
                    None => {
                        errors.push(field_error(format!("/items/{i}/product_id"), "is required".into()));
                        None
                    }
                };
                let quantity = match item.get("quantity") {
                    Some(q) => match q.as_u64() {
                        Some(q) if (1..=MAX_QUANTITY).contains(&q) => Some(q),
                        _ => {
                            let detail = format!("must be a whole number from 1 to {MAX_QUANTITY}");
                            errors.push(field_error(format!("/items/{i}/quantity"), detail));
                            None
                        }
                    },
                    None => {
                        errors.push(field_error(format!("/items/{i}/quantity"), "is required".into()));
                        None
                    }
                };
                if let (Some(product_id), Some(quantity)) = (product_id, quantity) {
                    items.push((product_id, quantity));
                }
            }
        }
        Some(_) => errors.push(field_error("/items".into(), "must be an array".into())),
        None => errors.push(field_error("/items".into(), "is required".into())),
    }
    let Some(user_id) = user_id.filter(|_| errors.is_empty()) else {
        return Err(bad_request("the order is incomplete or malformed; see `errors`".into(), errors));
    };

    if !USERS.iter().any(|u| u.id == user_id) {
        errors.push(field_error("/user_id".into(), format!("unknown user `{}`", echo(&user_id))));
    }
    for (i, (product_id, _)) in items.iter().enumerate() {
        if product(product_id).is_none() {
            errors
                .push(field_error(format!("/items/{i}/product_id"), format!("unknown product `{}`", echo(product_id))));
        }
    }
    if !errors.is_empty() {
        return Err(Invalid {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            detail: "the order refers to a user or product that does not exist; see `errors`".into(),
            errors,
        });
    }
    Ok(NewOrder { user_id, items })
}

/// The orders: the seeded ones, then those created since start, in creation order.
struct OrderStore {
    inner: Mutex<Orders>,
}

struct Orders {
    list: Vec<Order>,
    next_id: u32,
}

impl OrderStore {
    fn seeded() -> Self {
        let list: Vec<Order> = SEED_ORDERS
            .iter()
            .map(|seed| {
                let items = seed.items.iter().map(|&(product_id, quantity)| (product_id.to_owned(), quantity));
                Order::new(seed.id.to_owned(), seed.user_id.to_owned(), items, seed.status, seed.created_at.to_owned())
            })
            .collect();
        Self { inner: Mutex::new(Orders { list, next_id: 3001 + SEED_ORDERS.len() as u32 }) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Orders> {
        // The data stays consistent even if a holder panicked: every update is a single push.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn list(&self, user_id: Option<&str>) -> Vec<Order> {
        let orders = self.lock();
        orders.list.iter().filter(|o| user_id.is_none_or(|u| o.user_id == u)).cloned().collect()
    }

    fn get(&self, id: &str) -> Option<Order> {
        self.lock().list.iter().find(|o| o.id == id).cloned()
    }

    /// Stores a validated order under the next id; `None` when the store is full.
    fn create(&self, new: NewOrder) -> Option<Order> {
        let mut orders = self.lock();
        if orders.list.len() >= MAX_ORDERS {
            return None;
        }
        let id = format!("o-{}", orders.next_id);
        orders.next_id += 1;
        let order = Order::new(id, new.user_id, new.items, "pending", now_rfc3339());
        orders.list.push(order.clone());
        Some(order)
    }
}

/// A user of the demo shop.
#[derive(Debug, Serialize)]
struct User {
    id: &'static str,
    name: &'static str,
    email: &'static str,
    city: &'static str,
    created_at: &'static str,
}

/// A product of the demo shop's catalog.
#[derive(Debug, Serialize)]
struct Product {
    id: &'static str,
    name: &'static str,
    price_cents: u64,
    currency: &'static str,
    in_stock: bool,
    category: &'static str,
}

/// An order, as the orders service serves it.
#[derive(Debug, Clone, Serialize)]
struct Order {
    id: String,
    user_id: String,
    items: Vec<OrderItem>,
    total_cents: u64,
    currency: &'static str,
    status: &'static str,
    created_at: String,
}

/// One line of an order, priced when the order was placed.
#[derive(Debug, Clone, Serialize)]
struct OrderItem {
    product_id: String,
    quantity: u64,
    unit_price_cents: u64,
}

impl Order {
    /// An order of `items` (product id, quantity), priced from the catalog. Unknown products are skipped: callers
    /// validate first.
    fn new(
        id: String,
        user_id: String,
        items: impl IntoIterator<Item = (String, u64)>,
        status: &'static str,
        created_at: String,
    ) -> Self {
        let items: Vec<OrderItem> = items
            .into_iter()
            .filter_map(|(product_id, quantity)| {
                let unit_price_cents = product(&product_id)?.price_cents;
                Some(OrderItem { product_id, quantity, unit_price_cents })
            })
            .collect();
        let total_cents = items.iter().map(|i| i.quantity.saturating_mul(i.unit_price_cents)).sum();
        Order { id, user_id, items, total_cents, currency: CURRENCY, status, created_at }
    }
}

/// The one currency of the catalog.
const CURRENCY: &str = "EUR";

const USERS: &[User] = &[
    User {
        id: "u-1001",
        name: "Amara Okafor",
        email: "amara.okafor@example.com",
        city: "Lagos",
        created_at: "2024-01-15T09:30:00Z",
    },
    User {
        id: "u-1002",
        name: "Lukas Becker",
        email: "lukas.becker@example.com",
        city: "Berlin",
        created_at: "2024-02-03T14:05:00Z",
    },
    User {
        id: "u-1003",
        name: "Sofía Márquez",
        email: "sofia.marquez@example.com",
        city: "Madrid",
        created_at: "2024-03-21T08:12:00Z",
    },
    User {
        id: "u-1004",
        name: "Kenji Tanaka",
        email: "kenji.tanaka@example.com",
        city: "Osaka",
        created_at: "2024-04-09T17:45:00Z",
    },
    User {
        id: "u-1005",
        name: "Priya Raman",
        email: "priya.raman@example.com",
        city: "Chennai",
        created_at: "2024-04-28T11:20:00Z",
    },
];

const PRODUCTS: &[Product] = &[
    Product {
        id: "p-2001",
        name: "Mechanical keyboard",
        price_cents: 8999,
        currency: CURRENCY,
        in_stock: true,
        category: "peripherals",
    },
    Product {
        id: "p-2002",
        name: "Wireless mouse",
        price_cents: 2999,
        currency: CURRENCY,
        in_stock: true,
        category: "peripherals",
    },
    Product {
        id: "p-2003",
        name: "27-inch 4K monitor",
        price_cents: 32900,
        currency: CURRENCY,
        in_stock: true,
        category: "displays",
    },
    Product {
        id: "p-2004",
        name: "USB-C hub",
        price_cents: 4599,
        currency: CURRENCY,
        in_stock: false,
        category: "accessories",
    },
    Product {
        id: "p-2005",
        name: "Laptop stand",
        price_cents: 3950,
        currency: CURRENCY,
        in_stock: true,
        category: "accessories",
    },
    Product {
        id: "p-2006",
        name: "Noise-cancelling headphones",
        price_cents: 19900,
        currency: CURRENCY,
        in_stock: true,
        category: "audio",
    },
    Product {
        id: "p-2007",
        name: "HD webcam",
        price_cents: 6900,
        currency: CURRENCY,
        in_stock: false,
        category: "video",
    },
    Product {
        id: "p-2008",
        name: "Desk lamp",
        price_cents: 3499,
        currency: CURRENCY,
        in_stock: true,
        category: "lighting",
    },
];

/// An order the demo starts with.
struct SeedOrder {
    id: &'static str,
    user_id: &'static str,
    items: &'static [(&'static str, u64)],
    status: &'static str,
    created_at: &'static str,
}

const SEED_ORDERS: &[SeedOrder] = &[
    SeedOrder {
        id: "o-3001",
        user_id: "u-1001",
        items: &[("p-2001", 1), ("p-2002", 1)],
        status: "delivered",
        created_at: "2024-05-02T10:15:00Z",
    },
    SeedOrder {
        id: "o-3002",
        user_id: "u-1002",
        items: &[("p-2003", 2)],
        status: "shipped",
        created_at: "2024-05-10T16:40:00Z",
    },
    SeedOrder {
        id: "o-3003",
        user_id: "u-1001",
        items: &[("p-2006", 1)],
        status: "processing",
        created_at: "2024-05-18T12:00:00Z",
    },
    SeedOrder {
        id: "o-3004",
        user_id: "u-1003",
        items: &[("p-2005", 1), ("p-2008", 2)],
        status: "delivered",
        created_at: "2024-05-20T09:05:00Z",
    },
    SeedOrder {
        id: "o-3005",
        user_id: "u-1004",
        items: &[("p-2004", 3)],
        status: "cancelled",
        created_at: "2024-05-27T19:22:00Z",
    },
    SeedOrder {
        id: "o-3006",
        user_id: "u-1005",
        items: &[("p-2007", 1), ("p-2002", 2)],
        status: "pending",
        created_at: "2024-06-01T07:48:00Z",
    },
];

fn product(id: &str) -> Option<&'static Product> {
    PRODUCTS.iter().find(|p| p.id == id)
}

/// A JSON response.
fn json(status: StatusCode, body: &impl Serialize) -> Reply {
    match serde_json::to_vec(body) {
        Ok(bytes) => with_body(status, "application/json", bytes),
        Err(_) => with_body(
            StatusCode::INTERNAL_SERVER_ERROR,
            "application/problem+json",
            br#"{"type":"about:blank","title":"Internal Server Error","status":500}"#.to_vec(),
        ),
    }
}

fn with_body(status: StatusCode, content_type: &'static str, body: Vec<u8>) -> Reply {
    let mut reply = Response::new(Full::new(Bytes::from(body)));
    *reply.status_mut() = status;
    reply.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    reply
}

/// An RFC 9457 problem: `application/problem+json` with `type`, `title`, `status`, `detail` and `instance` (the
/// request path).
fn problem(status: StatusCode, detail: impl Into<String>, instance: &str) -> Reply {
    problem_with(status, detail.into(), instance, Vec::new())
}

/// A problem with an `errors` member listing what is wrong where (JSON pointers into the request body).
fn problem_with(status: StatusCode, detail: String, instance: &str, errors: Vec<Value>) -> Reply {
    let mut body = json!({
        "type": "about:blank",
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "detail": detail,
        "instance": instance,
    });
    if !errors.is_empty() {
        body["errors"] = Value::Array(errors);
    }
    let mut reply = json(status, &body);
    reply.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
    reply
}

fn not_found(kind: &str, id: &str, path: &str) -> Reply {
    problem(StatusCode::NOT_FOUND, format!("no {kind} has the id `{}`", echo(id)), path)
}

fn method_not_allowed(allow: &'static str, path: &str) -> Reply {
    let mut reply = problem(StatusCode::METHOD_NOT_ALLOWED, format!("allowed methods: {allow}"), path);
    reply.headers_mut().insert(ALLOW, HeaderValue::from_static(allow));
    reply
}

/// A client-supplied value, cut to [`MAX_ECHO`] characters, for repeating it back in an error.
fn echo(value: &str) -> String {
    match value.char_indices().nth(MAX_ECHO) {
        Some((end, _)) => format!("{}...", &value[..end]),
        None => value.to_owned(),
    }
}

/// The value of the first `name` parameter in a query string, percent-decoded (`+` is a space).
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(key) == name).then(|| percent_decode(value))
    })
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = bytes.get(i + 1..i + 3).and_then(|h| std::str::from_utf8(h).ok());
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(byte) => {
                        out.push(byte);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            byte => out.push(byte),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The current time as an RFC 3339 UTC timestamp, to the second (`2024-06-01T07:48:00Z`).
fn now_rfc3339() -> String {
    let secs = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    rfc3339(secs)
}

fn rfc3339(unix_secs: u64) -> String {
    turnpike_core::time::rfc3339_utc(i64::try_from(unix_secs).unwrap_or(i64::MAX))
}

#[cfg(test)]
mod tests {
    use http::HeaderMap;
    use turnpike_gateway::config::{ConfigSource, load_and_compile};
    use turnpike_gateway::state::State;
    use turnpike_gateway::{AccessLogSink, GatewayHandle, StartOptions};

    use super::*;

    /// Where the demo config's gateway listens.
    const GATEWAY_ADDR: &str = "127.0.0.1:8080";

    /// What a test request got back.
    struct Got {
        status: StatusCode,
        headers: HeaderMap,
        body: Value,
    }

    impl Got {
        fn header(&self, name: &str) -> &str {
            self.headers.get(name).map(|v| v.to_str().unwrap()).unwrap_or("")
        }

        fn assert_problem(&self, status: StatusCode) {
            assert_eq!(self.status, status, "{}", self.body);
            assert_eq!(self.header("content-type"), "application/problem+json");
            assert_eq!(self.body["status"], status.as_u16());
            assert!(self.body["type"].is_string(), "{}", self.body);
            assert!(self.body["title"].is_string() && self.body["detail"].is_string(), "{}", self.body);
        }
    }

    /// Sends one request on a fresh HTTP/1.1 connection; a body is sent as JSON.
    async fn send(addr: SocketAddr, method: &str, path: &str, body: Option<&str>) -> Got {
        send_full(addr, method, path, body, &[]).await
    }

    async fn send_with(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Got {
        send_full(addr, method, path, None, headers).await
    }

    async fn send_full(
        addr: SocketAddr,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Got {
        let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
        tokio::spawn(conn);
        let mut req = Request::builder().method(method).uri(path).header("host", addr.to_string());
        if body.is_some() {
            req = req.header("content-type", "application/json");
        }
        for (name, value) in headers {
            req = req.header(*name, *value);
        }
        let req = req.body(Full::new(Bytes::from(body.unwrap_or("").to_owned()))).unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).unwrap() };
        Got { status: parts.status, headers: parts.headers, body }
    }

    async fn get(addr: SocketAddr, path: &str) -> Got {
        send(addr, "GET", path, None).await
    }

    async fn services() -> DemoServices {
        let any = "127.0.0.1:0".parse().unwrap();
        start(any, any, any, [any; 3]).await.unwrap()
    }

    fn ids(list: &Value) -> Vec<&str> {
        list.as_array().unwrap().iter().map(|v| v["id"].as_str().unwrap()).collect()
    }

    #[tokio::test]
    async fn lists_each_collection() {
        let s = services().await;
        let users = get(s.users(), "/users").await;
        assert_eq!(users.status, StatusCode::OK);
        assert_eq!(users.header("content-type"), "application/json");
        assert_eq!(users.header("x-served-by"), "users");
        assert_eq!(ids(&users.body["users"]), ["u-1001", "u-1002", "u-1003", "u-1004", "u-1005"]);
        assert_eq!(users.body["count"], 5);
        for user in users.body["users"].as_array().unwrap() {
            for field in ["name", "email", "city", "created_at"] {
                assert!(user[field].is_string(), "{user}");
            }
        }

        let products = get(s.products(), "/products").await;
        assert_eq!(products.status, StatusCode::OK);
        assert_eq!(products.header("x-served-by"), "products");
        assert_eq!(products.body["count"], 8);
        assert_eq!(ids(&products.body["products"])[0], "p-2001");
        let first = &products.body["products"][0];
        assert!(first["price_cents"].is_u64() && first["in_stock"].is_boolean() && first["currency"] == "EUR");

        let orders = get(s.orders(), "/orders").await;
        assert_eq!(orders.status, StatusCode::OK);
        assert_eq!(orders.header("x-served-by"), "orders");
        assert_eq!(ids(&orders.body["orders"]), ["o-3001", "o-3002", "o-3003", "o-3004", "o-3005", "o-3006"]);
    }

    #[tokio::test]
    async fn gets_one_by_id() {
        let s = services().await;
        let user = get(s.users(), "/users/u-1003").await;
        assert_eq!(user.status, StatusCode::OK);
        assert_eq!(user.body["id"], "u-1003");
        assert_eq!(user.body["email"], "sofia.marquez@example.com");

        let product = get(s.products(), "/products/p-2003").await;
        assert_eq!(product.status, StatusCode::OK);
        assert_eq!(product.body["price_cents"], 32900);

        let order = get(s.orders(), "/orders/o-3001").await;
        assert_eq!(order.status, StatusCode::OK);
        assert_eq!(order.body["user_id"], "u-1001");
        assert_eq!(order.body["total_cents"], 8999 + 2999);
        assert_eq!(order.body["items"][1], json!({"product_id": "p-2002", "quantity": 1, "unit_price_cents": 2999}));
    }

    #[tokio::test]
    async fn filters_orders_by_user() {
        let s = services().await;
        let mine = get(s.orders(), "/orders?user_id=u-1001").await;
        assert_eq!(ids(&mine.body["orders"]), ["o-3001", "o-3003"]);
        assert_eq!(mine.body["count"], 2);
        let encoded = get(s.orders(), "/orders?page=1&user_id=u%2D1002").await;
        assert_eq!(ids(&encoded.body["orders"]), ["o-3002"]);
        let nobody = get(s.orders(), "/orders?user_id=u-9999").await;
        assert_eq!(nobody.status, StatusCode::OK);
        assert_eq!(nobody.body["count"], 0);
    }

    #[tokio::test]
    async fn unknown_ids_and_paths_are_404_problems() {
        let s = services().await;
        for (addr, path, service) in [
            (s.users(), "/users/u-9999", "users"),
            (s.orders(), "/orders/o-9999", "orders"),
            (s.products(), "/products/p-9999", "products"),
            (s.users(), "/orders", "users"),
            (s.products(), "/products/p-2001/reviews", "products"),
            (s.orders(), "/", "orders"),
        ] {
            let got = get(addr, path).await;
            got.assert_problem(StatusCode::NOT_FOUND);
            assert_eq!(got.body["instance"], path);
            assert_eq!(got.header("x-served-by"), service);
        }
        let long = format!("/users/{}", "x".repeat(1000));
        let got = get(s.users(), &long).await;
        got.assert_problem(StatusCode::NOT_FOUND);
        assert!(got.body["detail"].as_str().unwrap().len() < 200, "long ids are not echoed in full");
    }

    #[tokio::test]
    async fn answers_health_on_every_service() {
        let s = services().await;
        for (addr, name) in [(s.users(), "users"), (s.orders(), "orders"), (s.products(), "products")] {
            let got = get(addr, "/health").await;
            assert_eq!(got.status, StatusCode::OK);
            assert_eq!(got.body, json!({"status": "ok"}));
            assert_eq!(got.header("x-served-by"), name);
        }
    }

    #[tokio::test]
    async fn other_methods_are_405_with_allow() {
        let s = services().await;
        let got = send(s.users(), "DELETE", "/users/u-1001", None).await;
        got.assert_problem(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(got.header("allow"), "GET, HEAD");
        let got = send(s.orders(), "PUT", "/orders", Some("{}")).await;
        got.assert_problem(StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(got.header("allow"), "GET, HEAD, POST");
        let got = send(s.orders(), "HEAD", "/orders/o-3002", None).await;
        assert_eq!(got.status, StatusCode::OK);
        assert_eq!(got.body, Value::Null);
    }

    #[tokio::test]
    async fn creates_an_order_then_serves_it() {
        let s = services().await;
        let body = r#"{"user_id": "u-1002", "items": [{"product_id": "p-2001", "quantity": 2},
                      {"product_id": "p-2008", "quantity": 1}], "note": "ignored"}"#;
        let created = send(s.orders(), "POST", "/orders", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        assert_eq!(created.header("content-type"), "application/json");
        assert_eq!(created.header("location"), "/api/orders/o-3007");
        assert_eq!(created.body["id"], "o-3007");
        assert_eq!(created.body["user_id"], "u-1002");
        assert_eq!(created.body["status"], "pending");
        assert_eq!(created.body["total_cents"], 2 * 8999 + 3499);
        assert_eq!(created.body["items"][0]["unit_price_cents"], 8999);
        let created_at = created.body["created_at"].as_str().unwrap();
        assert!(created_at.len() == 20 && created_at.ends_with('Z') && created_at.starts_with("20"), "{created_at}");

        let fetched = get(s.orders(), "/orders/o-3007").await;
        assert_eq!(fetched.status, StatusCode::OK);
        assert_eq!(fetched.body, created.body);
        let theirs = get(s.orders(), "/orders?user_id=u-1002").await;
        assert_eq!(ids(&theirs.body["orders"]), ["o-3002", "o-3007"]);

        let second = send(s.orders(), "POST", "/orders", Some(body)).await;
        assert_eq!(second.body["id"], "o-3008");
        assert_eq!(get(s.orders(), "/orders").await.body["count"], 8);
    }

    #[tokio::test]
    async fn malformed_orders_are_400_problems() {
        let s = services().await;
        let got = send(s.orders(), "POST", "/orders", Some("{\"user_id\": \"u-1001\", ")).await;
        got.assert_problem(StatusCode::BAD_REQUEST);
        assert!(got.body["detail"].as_str().unwrap().contains("not valid JSON"), "{}", got.body);

        for body in ["", "[1, 2]", "\"order\"", "null"] {
            send(s.orders(), "POST", "/orders", Some(body)).await.assert_problem(StatusCode::BAD_REQUEST);
        }

        let got = send(s.orders(), "POST", "/orders", Some("{}")).await;
        got.assert_problem(StatusCode::BAD_REQUEST);
        let pointers: Vec<&str> =
            got.body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        assert_eq!(pointers, ["/user_id", "/items"]);

        let body = r#"{"user_id": 7, "items": [{"product_id": "p-2001"}, {"product_id": "p-2002", "quantity": 0},
                      {"quantity": 1.5}, "p-2003"]}"#;
        let got = send(s.orders(), "POST", "/orders", Some(body)).await;
        got.assert_problem(StatusCode::BAD_REQUEST);
        let pointers: Vec<&str> =
            got.body["errors"].as_array().unwrap().iter().map(|e| e["pointer"].as_str().unwrap()).collect();
        assert_eq!(
            pointers,
            [
                "/user_id",
                "/items/0/quantity",
                "/items/1/quantity",
                "/items/2/product_id",
                "/items/2/quantity",
                "/items/3"
            ]
        );

        let got = send(s.orders(), "POST", "/orders", Some(r#"{"user_id": "u-1001", "items": []}"#)).await;
        got.assert_problem(StatusCode::BAD_REQUEST);
        assert_eq!(get(s.orders(), "/orders").await.body["count"], 6, "nothing was created");
    }

    #[tokio::test]
    async fn unknown_references_are_422_problems() {
        let s = services().await;
        let body = r#"{"user_id": "u-1001", "items": [{"product_id": "p-2001", "quantity": 1},
                      {"product_id": "p-9999", "quantity": 1}]}"#;
        let got = send(s.orders(), "POST", "/orders", Some(body)).await;
        got.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            got.body["errors"],
            json!([{"pointer": "/items/1/product_id", "detail": "unknown product `p-9999`"}])
        );

        let body = r#"{"user_id": "u-0000", "items": [{"product_id": "p-2001", "quantity": 1}]}"#;
        let got = send(s.orders(), "POST", "/orders", Some(body)).await;
        got.assert_problem(StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(got.body["errors"][0]["pointer"], "/user_id");
        assert_eq!(get(s.orders(), "/orders").await.body["count"], 6, "nothing was created");
    }

    #[tokio::test]
    async fn bodies_over_64_kib_are_413() {
        let s = services().await;
        let big = format!(r#"{{"user_id": "u-1001", "pad": "{}"}}"#, "x".repeat(MAX_BODY));
        send(s.orders(), "POST", "/orders", Some(&big)).await.assert_problem(StatusCode::PAYLOAD_TOO_LARGE);
    }

    #[tokio::test]
    async fn every_reference_resolves() {
        let s = services().await;
        let users = get(s.users(), "/users").await.body;
        let products = get(s.products(), "/products").await.body;
        let orders = get(s.orders(), "/orders").await.body;
        let user_ids = ids(&users["users"]);
        let product_ids = ids(&products["products"]);
        for order in orders["orders"].as_array().unwrap() {
            assert!(user_ids.contains(&order["user_id"].as_str().unwrap()), "{order}");
            let mut total = 0;
            for item in order["items"].as_array().unwrap() {
                let product_id = item["product_id"].as_str().unwrap();
                assert!(product_ids.contains(&product_id), "{order}");
                let product = &products["products"][product_ids.iter().position(|p| *p == product_id).unwrap()];
                assert_eq!(item["unit_price_cents"], product["price_cents"]);
                total += item["quantity"].as_u64().unwrap() * item["unit_price_cents"].as_u64().unwrap();
            }
            assert!(!order["items"].as_array().unwrap().is_empty());
            assert_eq!(order["total_cents"], total, "{order}");
            // Each reference is also served by id.
            assert_eq!(get(s.users(), &format!("/users/{}", order["user_id"].as_str().unwrap())).await.status, 200);
        }
    }

    #[tokio::test]
    async fn dropping_stops_the_services() {
        let s = services().await;
        let addr = s.users();
        assert_eq!(get(addr, "/health").await.status, StatusCode::OK);
        drop(s);
        // Aborted tasks are dropped at the runtime's next turn.
        let mut refused = false;
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(addr).await.is_err() {
                refused = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert!(refused, "the listener is closed");
    }

    #[tokio::test]
    async fn reports_which_address_failed_to_bind() {
        let s = services().await;
        let any = "127.0.0.1:0".parse().unwrap();
        let err = start(any, s.orders(), any, [any; 3]).await.unwrap_err();
        assert!(err.to_string().contains(&format!("orders demo service on {}", s.orders())), "{err}");
    }

    #[test]
    fn banner_shows_a_curl_per_public_url() {
        let text = banner("127.0.0.1:8080".parse().unwrap(), ADMIN_ADDR.parse().unwrap(), "tok.en.value");
        assert!(text.contains("TOKEN=tok.en.value\n"), "{text}");
        assert!(text.contains("curl -i http://127.0.0.1:8080/api/me -H \"Authorization: Bearer $TOKEN\""), "{text}");
        for url in [
            "/api/users\n",
            "/api/users/u-1001\n",
            "/api/orders\n",
            "/api/orders/o-3001\n",
            "/api/products\n",
            "/api/products/p-2001\n",
            "/api/inventory\n",
        ] {
            assert!(text.contains(&format!("curl -i http://127.0.0.1:8080{url}")), "{url} in:\n{text}");
        }
        assert!(text.contains("curl -i -X POST http://127.0.0.1:8080/api/orders"), "{text}");
        for addr in [USERS_ADDR, ORDERS_ADDR, PRODUCTS_ADDR] {
            assert!(text.contains(addr), "{text}");
        }
        for path in ["/metrics", "/healthz", "/readyz", "/status"] {
            assert!(text.contains(&format!("http://127.0.0.1:9901{path}")), "{path} in:\n{text}");
        }
    }

    #[test]
    fn formats_rfc3339() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_717_228_080), "2024-06-01T07:48:00Z");
    }

    #[test]
    fn config_matches_the_service_addresses() {
        for text in
            [GATEWAY_ADDR, USERS_ADDR, ORDERS_ADDR, PRODUCTS_ADDR, DEMO_JWT_SECRET, DEMO_JWT_ISSUER, DEMO_JWT_AUDIENCE]
                .into_iter()
                .chain(INVENTORY_ADDRS)
        {
            assert!(CONFIG.contains(text), "{text}");
        }
        if let Err(report) = load_and_compile(&ConfigSource::text("demo.yaml", CONFIG), &State::default(), 1) {
            panic!("examples/demo.yaml is invalid:\n{report}");
        }
    }

    /// The public URL surface, through a real gateway running the demo config (its addresses swapped for free
    /// ports).
    #[tokio::test]
    async fn serves_the_public_urls_through_the_gateway() {
        let s = services().await;
        let config = CONFIG
            .replace(GATEWAY_ADDR, "127.0.0.1:0")
            .replace(ADMIN_ADDR, "127.0.0.1:0")
            .replace(USERS_ADDR, &s.users().to_string())
            .replace(ORDERS_ADDR, &s.orders().to_string())
            .replace(PRODUCTS_ADDR, &s.products().to_string())
            .replace(INVENTORY_ADDRS[0], &s.inventory()[0].to_string())
            .replace(INVENTORY_ADDRS[1], &s.inventory()[1].to_string())
            .replace(INVENTORY_ADDRS[2], &s.inventory()[2].to_string());
        let gateway = GatewayHandle::start(StartOptions {
            source: ConfigSource::text("demo.yaml", config),
            workers: Some(1),
            access_log: AccessLogSink::Writer(Box::new(|| Box::new(std::io::sink()))),
            watch: false,
        })
        .await
        .unwrap();
        let gw = gateway.listener_addr("public").unwrap();

        for (path, service) in [
            ("/api/users", "users"),
            ("/api/users/u-1001", "users"),
            ("/api/orders", "orders"),
            ("/api/orders/o-3001", "orders"),
            ("/api/products", "products"),
            ("/api/products/p-2001", "products"),
        ] {
            let got = get(gw, path).await;
            assert_eq!(got.status, StatusCode::OK, "{path}: {}", got.body);
            assert_eq!(got.header("x-served-by"), service, "{path}");
        }
        let mine = get(gw, "/api/orders?user_id=u-1001").await;
        assert_eq!(ids(&mine.body["orders"]), ["o-3001", "o-3003"]);

        // Inventory: one of its three instances fails every second request, and no client sees it.
        let mut served_by = std::collections::HashSet::new();
        for i in 0..60 {
            let path = if i % 2 == 0 { "/api/inventory" } else { "/api/inventory/p-2001" };
            let got = get(gw, path).await;
            assert_eq!(got.status, StatusCode::OK, "request {i} to {path}: {}", got.body);
            served_by.insert(got.header("x-served-by").to_owned());
        }
        assert!(served_by.len() >= 2, "one instance served everything: {served_by:?}");
        let flaky = s.inventory()[2];
        let mut failed = 0;
        for _ in 0..4 {
            failed += usize::from(get(flaky, "/inventory").await.status == StatusCode::SERVICE_UNAVAILABLE);
        }
        assert_eq!(failed, 2, "the flaky instance fails every second request");

        let body = r#"{"user_id": "u-1001", "items": [{"product_id": "p-2001", "quantity": 2}]}"#;
        let created = send(gw, "POST", "/api/orders", Some(body)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.body);
        let location = created.header("location").to_owned();
        assert_eq!(location, "/api/orders/o-3007");
        assert_eq!(get(gw, &location).await.body, created.body);

        get(gw, "/api/users/u-9999").await.assert_problem(StatusCode::NOT_FOUND);
        assert_eq!(send(gw, "POST", "/api/users", Some("{}")).await.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(get(gw, "/users").await.status, StatusCode::NOT_FOUND, "only /api/... is public");

        // /api/me: the identity the gateway verified, as the users service received it.
        let bearer = format!("Bearer {}", demo_token(Duration::from_secs(60)));
        let me = send_with(gw, "GET", "/api/me", &[("authorization", &bearer), ("x-user-id", "admin")]).await;
        assert_eq!(me.status, StatusCode::OK, "{}", me.body);
        let seen = &me.body["received_from_gateway"];
        assert_eq!(seen["x-user-id"], "u-1001", "the spoofed header never reaches the service");
        assert_eq!(seen["x-user-roles"], json!(["customer"]));
        assert_eq!(seen["x-user-scopes"], json!(["orders:read", "profile"]));
        assert_eq!(seen["x-user-email"], "amara.okafor@example.com");
        assert_eq!(seen["x-auth-method"], "jwt");
        assert_eq!(me.body["user"]["id"], "u-1001");
        let anonymous = send_with(gw, "GET", "/api/me", &[("x-user-id", "admin")]).await;
        anonymous.assert_problem(StatusCode::UNAUTHORIZED);
        assert_eq!(anonymous.header("www-authenticate"), "Bearer realm=\"turnpike\"");
        let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs();
        let expired = format!("Bearer {}", signed_demo_token(now - 7200, now - 3600));
        let expired = send_with(gw, "GET", "/api/me", &[("authorization", &expired)]).await;
        expired.assert_problem(StatusCode::UNAUTHORIZED);
        gateway.shutdown().await;
    }
}
