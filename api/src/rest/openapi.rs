//! `GET /openapi.json`: the REST API described as OpenAPI 3.1, built from
//! the operation table ([`crate::ops`]) and the request and response types
//! the handlers use (their `utoipa::ToSchema` derives). Every route of the
//! table goes through [`describe`], whose `match` panics on a route it does
//! not know, so a route cannot be served without being described; a test
//! walks the table to hold it so.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
use utoipa::openapi::request_body::RequestBodyBuilder;
use utoipa::openapi::response::{ResponseBuilder, ResponsesBuilder};
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Type};
use utoipa::openapi::security::{
    ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
};
use utoipa::openapi::{
    ComponentsBuilder, ContentBuilder, InfoBuilder, LicenseBuilder, OpenApi, OpenApiBuilder, PathsBuilder, RefOr,
    Required, Schema, ServerBuilder,
};
use utoipa::{IntoParams, ToSchema};

use crate::ops::Access;
use crate::service::{cluster, external, history, identity, plugins, tasks, vectors};

/// What one route takes and gives.
struct Route {
    summary: &'static str,
    body: Body,
    ok: Answer,
    /// Query parameters.
    query: Vec<utoipa::openapi::path::Parameter>,
    /// Headers the route reads.
    headers: Vec<(&'static str, &'static str)>,
    /// Answers besides 200 and the errors every route can give: their
    /// body is the error's, unless one is given.
    also: Vec<(&'static str, &'static str, Option<RefOr<Schema>>)>,
}

enum Body {
    None,
    Json(Box<RefOr<Schema>>, Option<Value>),
    /// `/login`: a form, or JSON.
    Login,
}

enum Answer {
    Json(Box<RefOr<Schema>>),
    Text(&'static str),
    Binary,
    Html,
    /// A permanent redirect.
    Redirect,
}

/// The schemas the document refers to, gathered as routes are described.
#[derive(Default)]
struct Schemas(BTreeMap<String, RefOr<Schema>>);

impl Schemas {
    /// `T`'s schema (and the ones it refers to) among the components, and a
    /// reference to it.
    fn of<T: ToSchema>(&mut self) -> RefOr<Schema> {
        let mut nested = Vec::new();
        T::schemas(&mut nested);
        self.0.extend(nested);
        let name = T::name().to_string();
        self.0.insert(name.clone(), T::schema());
        RefOr::Ref(utoipa::openapi::Ref::from_schema_name(name))
    }

    /// `{"<field>": [T]}`, the shape of the list routes.
    fn list_of<T: ToSchema>(&mut self, field: &str) -> RefOr<Schema> {
        let items = self.of::<T>();
        ObjectBuilder::new().property(field, ArrayBuilder::new().items(items)).required(field).into()
    }
}

fn object(fields: &[(&str, Type, &str)]) -> RefOr<Schema> {
    let mut o = ObjectBuilder::new();
    for (name, ty, about) in fields {
        o = o.property(*name, ObjectBuilder::new().schema_type(ty.clone()).description(Some(*about))).required(*name);
    }
    o.into()
}

fn query<T: IntoParams>() -> Vec<utoipa::openapi::path::Parameter> {
    T::into_params(|| Some(ParameterIn::Query))
}

fn route(summary: &'static str, body: Body, ok: Answer) -> Route {
    Route { summary, body, ok, query: Vec::new(), headers: Vec::new(), also: Vec::new() }
}

fn json(s: RefOr<Schema>) -> Answer {
    Answer::Json(Box::new(s))
}

fn body(s: RefOr<Schema>, example: Value) -> Body {
    Body::Json(Box::new(s), Some(example))
}

/// `?consistency=`: how fresh a read must be.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Consistency {
    /// `local` (the default: this node's state, maybe behind), `leader`
    /// (what the leader has committed, confirmed by its lease) or
    /// `linearizable` (through the leader's read index).
    consistency: Option<String>,
}

/// `?force=true`: go ahead although the change leaves less than a quorum
/// of caught-up voters, or removes the leader.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Force {
    force: Option<bool>,
}

/// `?wait=`: seconds to wait for the task to finish (at most 60).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Wait {
    wait: Option<f64>,
}

/// `?since_ms=`: samples after this cluster time only.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct Since {
    since_ms: Option<u64>,
}

/// What `method path` takes and gives. Panics on a route it does not know:
/// the completeness test runs this over every route of the table.
fn describe(method: &str, path: &str, s: &mut Schemas) -> Route {
    // The membership routes share one answer: registered once, referred to
    // by each.
    let reply = s.of::<cluster::MembershipReply>();
    let membership = || json(reply.clone());
    match (method, path) {
        ("GET", "/health") => {
            route("Liveness: the node's view of the cluster", Body::None, json(s.of::<cluster::HealthView>()))
        }
        ("GET", "/health/ready") => Route {
            also: vec![("503", "not ready: `reason` says why (same body)", Some(s.of::<cluster::HealthView>()))],
            ..route("Readiness: 200 when this node can serve", Body::None, json(s.of::<cluster::HealthView>()))
        },
        ("GET", "/metrics") => route("Prometheus metrics", Body::None, Answer::Text("text/plain; version=0.0.4")),
        ("GET", "/metrics/history") => Route {
            query: query::<Since>(),
            ..route("Recent metric samples (the dashboard's charts)", Body::None, json(s.of::<history::HistoryView>()))
        },
        ("POST", "/login") => Route {
            ..route(
                "Log in: the OAuth2 password grant (form or JSON)",
                Body::Login,
                json(s.of::<identity::LoginResponse>()),
            )
        },
        ("GET", "/whoami") => route("The caller: subject, role, tenant", Body::None, json(s.of::<identity::WhoAmI>())),
        ("GET", "/audit") => Route {
            query: query::<crate::service::authn::AuditQuery>(),
            ..route("Recent audit events on this node", Body::None, json(s.of::<crate::service::authn::AuditList>()))
        },
        ("GET", "/dashboard") => route("Redirects (308) to /dashboard/", Body::None, Answer::Redirect),
        ("GET", "/dashboard/") => route("The browser dashboard", Body::None, Answer::Html),
        ("GET", "/dashboard/{file}") => route("A file of the dashboard", Body::None, Answer::Text("text/javascript")),
        ("GET", "/openapi.json") => route("This document", Body::None, json(ObjectBuilder::new().into())),
        ("GET", "/docs") => route("This document, rendered for reading", Body::None, Answer::Html),
        ("GET", "/cluster/status") => {
            route("Leader, term, indexes and members", Body::None, json(s.of::<cluster::ClusterStatusView>()))
        }
        ("GET", "/agents/registry" | "/cluster/nodes") => Route {
            query: query::<Consistency>(),
            ..route("The node registry", Body::None, json(s.of::<cluster::RegistryView>()))
        },
        ("GET", "/cluster/nodes/{id}") => Route {
            query: query::<Consistency>(),
            also: vec![("404", "no such node", None)],
            ..route(
                "One node of the registry (ETag: its record version)",
                Body::None,
                json(s.of::<cluster::RegistryEntryView>()),
            )
        },
        ("PUT", "/cluster/nodes/{id}/labels") => Route {
            headers: vec![("If-Match", "the record version (ETag) the change is based on")],
            also: vec![("412", "the record changed since the If-Match version", None)],
            ..route(
                "Replace a node's labels",
                body(
                    ObjectBuilder::new()
                        .additional_properties(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .into(),
                    json!({"zone": "eu-1", "gpu": "a100"}),
                ),
                json(s.of::<cluster::RegistryEntryView>()),
            )
        },
        ("GET", "/debug/digest") => route(
            "A digest of the replicated state (equal on caught-up nodes)",
            Body::None,
            json(s.of::<cluster::DigestView>()),
        ),
        ("GET", "/cluster/backup") => {
            route("A backup of the whole replicated state, streamed", Body::None, Answer::Binary)
        }
        ("POST", "/cluster/nodes/{id}/promote") => route("Make a learner a voter", Body::None, membership()),
        ("POST", "/cluster/nodes/{id}/demote") => {
            Route { query: query::<Force>(), ..route("Make a voter a learner", Body::None, membership()) }
        }
        ("POST", "/cluster/nodes/{id}/remove") => {
            Route { query: query::<Force>(), ..route("Remove a node from the cluster", Body::None, membership()) }
        }
        ("POST", "/cluster/nodes/{id}/transfer-leader") => {
            route("Hand leadership to this voter", Body::None, membership())
        }
        ("POST", "/cluster/nodes/{id}/drain") => {
            route("Place no new tasks on this node", Body::None, json(s.of::<cluster::RegistryEntryView>()))
        }
        ("POST", "/cluster/nodes/{id}/undrain") => {
            route("Place tasks on this node again", Body::None, json(s.of::<cluster::RegistryEntryView>()))
        }
        ("POST", "/cluster/add-learner" | "/cluster/join") => route(
            "Add a node as a learner",
            body(
                s.of::<cluster::JoinRequest>(),
                json!({"id": 4, "raft_addr": "10.0.0.4:7702", "http_addr": "10.0.0.4:7700", "grpc_addr": "10.0.0.4:7701"}),
            ),
            membership(),
        ),
        ("POST", "/tasks/submit") => {
            let one = s.of::<tasks::SubmitRequest>();
            let batch: RefOr<Schema> =
                ObjectBuilder::new().property("tasks", ArrayBuilder::new().items(one.clone())).required("tasks").into();
            let one_reply = s.of::<tasks::SubmitResponse>();
            let batch_reply: RefOr<Schema> = ObjectBuilder::new()
                .property("tasks", ArrayBuilder::new().items(one_reply.clone()))
                .required("tasks")
                .into();
            Route {
                headers: vec![(
                    "Idempotency-Key",
                    "a resubmit with the same key (within the tenant) answers the first task, `duplicate: true`",
                )],
                also: vec![("504", "indeterminate: the task may or may not exist; resubmit with the same key", None)],
                ..route(
                    "Submit a task, or a batch (`{\"tasks\": [...]}`)",
                    body(
                        utoipa::openapi::schema::OneOfBuilder::new().item(one).item(batch).into(),
                        json!({"type": "vectorize", "payload": {"text": "hello world"}}),
                    ),
                    json(utoipa::openapi::schema::OneOfBuilder::new().item(one_reply).item(batch_reply).into()),
                )
            }
        }
        ("GET", "/tasks") => Route {
            query: query::<tasks::ListQuery>(),
            ..route(
                "List the tenant's tasks, newest first (paged by `cursor`)",
                Body::None,
                json(s.of::<tasks::TaskList>()),
            )
        },
        ("GET", "/tasks/{id}/status") => {
            route("A task's state, attempts and result", Body::None, json(s.of::<tasks::TaskView>()))
        }
        ("GET", "/tasks/{id}/result") => Route {
            query: query::<Wait>(),
            also: vec![(
                "202",
                "not finished yet (within `wait`): the state, same body",
                Some(s.of::<tasks::ResultView>()),
            )],
            ..route(
                "A task's result, waiting for it up to `wait` seconds",
                Body::None,
                json(s.of::<tasks::ResultView>()),
            )
        },
        ("POST", "/tasks/{id}/cancel") => route("Cancel a task", Body::None, json(s.of::<tasks::TaskView>())),
        ("GET", "/plugins/list") => {
            route("Plugins: built-in, WASM, subprocess", Body::None, json(s.list_of::<plugins::PluginView>("plugins")))
        }
        ("POST", "/plugins/load") => route(
            "Load (or replace) a WASM or subprocess plugin on every node",
            body(
                s.of::<plugins::LoadRequest>(),
                json!({"manifest": {"name": "greet", "version": "1.0.0"}, "module_base64": "AGFzbQEAAAA="}),
            ),
            json(s.of::<plugins::PluginView>()),
        ),
        ("GET", "/plugins/{name}") => route("One plugin", Body::None, json(s.of::<plugins::PluginView>())),
        ("POST", "/plugins/{name}/unload") => {
            route("Unload a plugin", Body::None, json(object(&[("unloaded", Type::String, "the plugin's name")])))
        }
        ("GET", "/models") => {
            route("The embedding models on live nodes", Body::None, json(s.list_of::<plugins::ModelView>("models")))
        }
        ("GET", "/tenants") => route("Tenants", Body::None, json(s.list_of::<identity::TenantView>("tenants"))),
        ("POST", "/tenants") => route(
            "Create a tenant",
            body(s.of::<identity::TenantRequest>(), json!({"name": "research"})),
            json(s.of::<identity::TenantView>()),
        ),
        ("GET", "/users") => route("Users", Body::None, json(s.list_of::<identity::UserView>("users"))),
        ("POST", "/users") => route(
            "Create a user",
            body(
                s.of::<identity::UserRequest>(),
                json!({"username": "ada", "password": "a-long-password", "tenant": "research", "role": "user"}),
            ),
            json(s.of::<identity::UserView>()),
        ),
        ("PUT", "/users/{name}") => route(
            "Change a user's password, role or tenant",
            body(s.of::<identity::UserUpdate>(), json!({"password": "another-long-password"})),
            json(s.of::<identity::UserView>()),
        ),
        ("DELETE", "/users/{name}") => {
            route("Delete a user", Body::None, json(object(&[("deleted", Type::String, "the user's name")])))
        }
        ("GET", "/apikeys") => route(
            "API keys (an admin's: all; others: their own)",
            Body::None,
            json(s.list_of::<identity::ApiKeyView>("keys")),
        ),
        ("POST", "/apikeys") => route(
            "Create an API key (its secret is shown once)",
            body(s.of::<identity::ApiKeyRequest>(), json!({"name": "ingest", "role": "user"})),
            json(s.of::<identity::ApiKeyView>()),
        ),
        ("DELETE", "/apikeys/{id}") => route("Revoke an API key", Body::None, json(s.of::<identity::ApiKeyView>())),
        ("GET", "/collections") => {
            route("Collections", Body::None, json(s.list_of::<vectors::CollectionView>("collections")))
        }
        ("POST", "/collections") => route(
            "Create a collection",
            body(s.of::<vectors::CollectionRequest>(), json!({"name": "docs", "dimension": 384, "metric": "cosine"})),
            json(s.of::<vectors::CollectionView>()),
        ),
        ("GET", "/collections/{name}") => route("One collection", Body::None, json(s.of::<vectors::CollectionView>())),
        ("DELETE", "/collections/{name}") => route(
            "Delete a collection and its points",
            Body::None,
            json(object(&[("deleted", Type::String, "the collection's name")])),
        ),
        ("POST", "/collections/{name}/points") => route(
            "Upsert points (by id)",
            body(
                s.of::<vectors::UpsertRequest>(),
                json!({"points": [{"id": "doc1", "vector": [0.1, 0.2, 0.3], "metadata": {"lang": "en"}}]}),
            ),
            json(s.of::<vectors::CollectionView>()),
        ),
        ("DELETE", "/collections/{name}/points") => route(
            "Delete points by id",
            body(s.of::<vectors::DeletePointsRequest>(), json!({"ids": ["doc1"]})),
            json(s.of::<vectors::CollectionView>()),
        ),
        ("GET", "/collections/{name}/points/{id}") => {
            route("One point", Body::None, json(s.of::<vectors::PointBody>()))
        }
        ("POST", "/vector/search") => route(
            "Nearest neighbours of a vector or a text",
            body(
                s.of::<vectors::SearchRequest>(),
                json!({"collection": "docs", "text": "a query", "top_k": 5, "filter": {"must": [{"key": "lang", "match": "en"}]}}),
            ),
            json(s.of::<vectors::SearchResponse>()),
        ),
        ("POST", "/vector/search/batch") => route(
            "Several searches of one collection in one request",
            body(
                s.of::<vectors::BatchSearchRequest>(),
                json!({"collection": "docs", "queries": [{"text": "first", "top_k": 5}, {"vector": [0.1, 0.2, 0.3], "top_k": 3}]}),
            ),
            json(s.of::<vectors::BatchSearchResponse>()),
        ),
        ("POST", "/external/ai") => route(
            "Call an external AI provider (OpenAI, HuggingFace)",
            body(
                s.of::<external::ExternalAiRequest>(),
                json!({"provider": "openai", "operation": "embeddings", "model": "text-embedding-3-small", "input": "hello world"}),
            ),
            json(s.of::<external::ExternalAiResponse>()),
        ),
        ("GET", "/external/providers") => route(
            "The configured providers and their usage",
            Body::None,
            json(s.list_of::<external::ProviderView>("providers")),
        ),
        ("POST", "/v1/embeddings") => route(
            "Embeddings in OpenAI's wire format, from this cluster's models",
            body(
                s.of::<super::external::OpenAiEmbeddingsRequest>(),
                json!({"model": "all-MiniLM-L6-v2", "input": ["hello world"]}),
            ),
            json(
                ObjectBuilder::new()
                    .property("object", ObjectBuilder::new().schema_type(Type::String))
                    .property("data", ArrayBuilder::new().items(ObjectBuilder::new()))
                    .property("model", ObjectBuilder::new().schema_type(Type::String))
                    .property("usage", ObjectBuilder::new())
                    .into(),
            ),
        ),
        (m, p) => panic!("route {m} {p} is in ops::OPERATIONS but has no description in openapi.rs"),
    }
}

/// Who may call, in words, and the extension tools can read.
fn access_words(a: Access) -> &'static str {
    match a {
        Access::Public => "public",
        Access::Metrics => "public unless security.metrics_auth (then admins)",
        Access::Read => "any authenticated caller (reader, user, admin)",
        Access::Write => "users and admins",
        Access::Admin => "admins",
    }
}

const ERRORS: [(&str, &str); 9] = [
    ("400", "invalid_argument: the request is malformed; nothing changed"),
    ("401", "unauthenticated: no credentials, or bad ones"),
    ("403", "permission_denied: the caller's role or tenant may not do this"),
    ("404", "not_found"),
    ("413", "resource_exhausted: the body is over node.max_body_size"),
    ("429", "resource_exhausted: too many requests, or a full quota (`Retry-After`)"),
    ("500", "internal: details only in the node's log"),
    ("503", "unavailable: no leader or no quorum; nothing changed, retry"),
    ("504", "indeterminate: the outcome is unknown (a write may have happened)"),
];

/// The whole document.
pub fn document() -> OpenApi {
    let mut s = Schemas::default();
    let error_schema: RefOr<Schema> = ObjectBuilder::new()
        .property(
            "error",
            ObjectBuilder::new()
                .property(
                    "code",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .description(Some("machine-readable, e.g. invalid_argument")),
                )
                .property("message", ObjectBuilder::new().schema_type(Type::String))
                .property("details", ObjectBuilder::new().description(Some("more, for some codes (null otherwise)")))
                .required("code")
                .required("message"),
        )
        .required("error")
        .examples([json!({"error": {"code": "not_found", "message": "no collection docs", "details": null}})])
        .into();
    s.0.insert("Error".into(), error_schema);
    let error_ref = || RefOr::Ref(utoipa::openapi::Ref::from_schema_name("Error"));

    let mut paths = PathsBuilder::new();
    for o in crate::ops::OPERATIONS {
        for (method, path) in o.rest {
            let r = describe(method, path, &mut s);
            let ok_code = if matches!(r.ok, Answer::Redirect) { "308" } else { "200" };
            let ok = match r.ok {
                Answer::Json(schema) => ResponseBuilder::new()
                    .description("OK")
                    .content("application/json", ContentBuilder::new().schema(Some(*schema)).build()),
                Answer::Text(ty) => ResponseBuilder::new().description("OK").content(
                    ty,
                    ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String))).build(),
                ),
                Answer::Binary => ResponseBuilder::new().description("the backup file").content(
                    "application/octet-stream",
                    ContentBuilder::new()
                        .schema(Some(
                            ObjectBuilder::new()
                                .schema_type(Type::String)
                                .content_media_type("application/octet-stream"),
                        ))
                        .build(),
                ),
                Answer::Html => ResponseBuilder::new().description("OK").content(
                    "text/html",
                    ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String))).build(),
                ),
                Answer::Redirect => ResponseBuilder::new().description("Permanent redirect (Location header)"),
            };
            let mut responses = ResponsesBuilder::new().response(ok_code, ok);
            let special: Vec<&str> = r.also.iter().map(|(code, _, _)| *code).collect();
            for (code, about, body) in r.also {
                responses = responses.response(
                    code,
                    ResponseBuilder::new().description(about).content(
                        "application/json",
                        ContentBuilder::new().schema(Some(body.unwrap_or_else(error_ref))).build(),
                    ),
                );
            }
            for (code, about) in ERRORS {
                // A route's own answer for a code stays (a builder's second
                // answer for a code would replace the first).
                if special.contains(&code) || ((code == "401" || code == "403") && o.access == Access::Public) {
                    continue;
                }
                responses = responses.response(
                    code,
                    ResponseBuilder::new()
                        .description(about)
                        .content("application/json", ContentBuilder::new().schema(Some(error_ref())).build()),
                );
            }
            let mut params: Vec<_> = path
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{').and_then(|x| x.strip_suffix('}')))
                .map(|name| {
                    let ty =
                        if name == "id" && path.starts_with("/cluster/nodes") { Type::Integer } else { Type::String };
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Path)
                        .required(Required::True)
                        .schema(Some(ObjectBuilder::new().schema_type(ty)))
                        .build()
                })
                .collect();
            params.extend(r.query);
            for (name, about) in r.headers {
                params.push(
                    ParameterBuilder::new()
                        .name(name)
                        .parameter_in(ParameterIn::Header)
                        .required(Required::False)
                        .description(Some(about))
                        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                        .build(),
                );
            }
            let mut op = OperationBuilder::new()
                .operation_id(Some(operation_id(o.name, method, path, o.rest.len())))
                .summary(Some(r.summary))
                .description(Some(format!("Access: {}.", access_words(o.access))))
                .tag(tag(path))
                .parameters(Some(params))
                .responses(responses.build());
            let mut ext = utoipa::openapi::extensions::Extensions::default();
            ext.insert("x-synod-access".into(), json!(format!("{:?}", o.access).to_lowercase()));
            if !o.grpc.is_empty() {
                ext.insert("x-synod-grpc".into(), json!(o.grpc));
            }
            op = op.extensions(Some(ext));
            op = match o.access {
                Access::Public => op.securities(Some(Vec::<SecurityRequirement>::new())),
                Access::Metrics => op.securities(Some([
                    SecurityRequirement::default(),
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                ])),
                _ => op.securities(Some([
                    SecurityRequirement::new("bearer", Vec::<String>::new()),
                    SecurityRequirement::new("apiKey", Vec::<String>::new()),
                ])),
            };
            op = match r.body {
                Body::None => op,
                Body::Json(schema, example) => op.request_body(Some(
                    RequestBodyBuilder::new()
                        .required(Some(Required::True))
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(*schema)).example(example).build(),
                        )
                        .build(),
                )),
                Body::Login => {
                    let login = s.of::<identity::LoginRequest>();
                    op.request_body(Some(
                        RequestBodyBuilder::new()
                            .required(Some(Required::True))
                            .content(
                                "application/x-www-form-urlencoded",
                                ContentBuilder::new()
                                    .schema(Some(login.clone()))
                                    .example(Some(json!("grant_type=password&username=admin&password=...")))
                                    .build(),
                            )
                            .content(
                                "application/json",
                                ContentBuilder::new()
                                    .schema(Some(login))
                                    .example(Some(
                                        json!({"grant_type": "password", "username": "admin", "password": "..."}),
                                    ))
                                    .build(),
                            )
                            .build(),
                    ))
                }
            };
            let method = match *method {
                "GET" => HttpMethod::Get,
                "POST" => HttpMethod::Post,
                "PUT" => HttpMethod::Put,
                "DELETE" => HttpMethod::Delete,
                other => panic!("method {other} of {path} has no OpenAPI name"),
            };
            paths = paths.path(*path, PathItem::new(method, op.build()));
        }
    }

    let components = ComponentsBuilder::new()
        .schemas_from_iter(s.0)
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("a token from POST /login"))
                    .build(),
            ),
        )
        .security_scheme(
            "apiKey",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "x-api-key",
                "an API key from POST /apikeys",
            ))),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Synod")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "A durable multi-tenant task queue and scheduler, plugin host and vector database in one Raft \
                     cluster. Errors carry `{\"error\": {\"code\", \"message\", \"details\"}}`. A tenant other than \
                     the caller's is chosen with the `x-synod-tenant` header (admins).",
                ))
                .license(Some(
                    LicenseBuilder::new().name("MIT OR Apache-2.0").identifier(Some("MIT OR Apache-2.0")).build(),
                ))
                .build(),
        )
        .servers(Some([ServerBuilder::new().url("/").build()]))
        .paths(paths.build())
        .components(Some(components))
        .build()
}

/// The operation's id: its name, with the route when it has aliases.
fn operation_id(name: &str, method: &str, path: &str, routes: usize) -> String {
    if routes == 1 {
        return name.to_string();
    }
    let mut tail: String = path
        .trim_matches('/')
        .chars()
        .filter(|c| !matches!(c, '{' | '}'))
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if path.len() > 1 && path.ends_with('/') {
        tail.push_str("_index");
    }
    format!("{name}_{}_{tail}", method.to_lowercase())
}

/// Groups for the rendered document: the first path segment.
fn tag(path: &str) -> String {
    match path.trim_start_matches('/').split('/').next().unwrap_or_default() {
        "health" | "metrics" | "openapi.json" | "docs" | "dashboard" => "node",
        "login" | "whoami" | "audit" | "users" | "tenants" | "apikeys" => "identity",
        "cluster" | "agents" | "debug" => "cluster",
        "tasks" => "tasks",
        "plugins" | "models" => "plugins",
        "collections" | "vector" => "vectors",
        "external" | "v1" => "external",
        _ => "other",
    }
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_of_the_table_is_in_the_document() {
        let doc = serde_json::to_value(document()).expect("serializes");
        let paths = doc["paths"].as_object().expect("paths");
        for (method, path, _) in crate::ops::rest_routes() {
            let op = &paths.get(path).unwrap_or_else(|| panic!("{path} is missing"))[method.to_lowercase()];
            assert!(op.is_object(), "{method} {path} is missing");
            let answers = &op["responses"];
            assert!(answers["200"].is_object() || answers["308"].is_object(), "{method} {path} has no answer");
            assert!(op["x-synod-access"].is_string(), "{method} {path} says no access rule");
        }
        // And nothing else: every documented operation is served.
        let served: usize = crate::ops::rest_routes().count();
        let documented: usize = paths.values().map(|item| item.as_object().map_or(0, |o| o.len())).sum();
        assert_eq!(served, documented);
        // A route's own answer for a code is kept, with its own body.
        let schema = |path: &str, m: &str, code: &str| {
            paths[path][m]["responses"][code]["content"]["application/json"]["schema"]["$ref"].clone()
        };
        assert_eq!(schema("/tasks/{id}/result", "get", "202"), "#/components/schemas/ResultView");
        assert_eq!(schema("/health/ready", "get", "503"), "#/components/schemas/HealthView");
        let d = paths["/tasks/submit"]["post"]["responses"]["504"]["description"].as_str().unwrap_or_default();
        assert!(d.contains("same key"), "{d}");
        // Operation ids are unique (generators name methods after them).
        let mut ids = std::collections::BTreeSet::new();
        for item in paths.values() {
            for op in item.as_object().expect("item").values() {
                let id = op["operationId"].as_str().expect("an operation id");
                assert!(ids.insert(id.to_string()), "operation id {id} twice");
            }
        }
        // Every reference resolves.
        let text = doc.to_string();
        for r in text.split("\"$ref\":\"#/components/schemas/").skip(1) {
            let name = r.split('"').next().unwrap_or_default();
            assert!(doc["components"]["schemas"][name].is_object(), "dangling reference to {name}");
        }
    }

    #[test]
    fn a_route_without_a_description_is_noticed() {
        let e = std::panic::catch_unwind(|| describe("GET", "/not-described", &mut Schemas::default()))
            .err()
            .expect("an undescribed route is noticed");
        let said = e.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(said.contains("has no description"), "{said}");
    }

    #[test]
    fn request_examples_parse_as_the_types_the_handlers_take() {
        let doc = serde_json::to_value(document()).expect("serializes");
        let example = |method: &str, path: &str| {
            doc["paths"][path][method]["requestBody"]["content"]["application/json"]["example"].clone()
        };
        serde_json::from_value::<tasks::SubmitRequest>(example("post", "/tasks/submit")).expect("submit");
        serde_json::from_value::<vectors::SearchRequest>(example("post", "/vector/search")).expect("search");
        serde_json::from_value::<vectors::BatchSearchRequest>(example("post", "/vector/search/batch")).expect("batch");
        serde_json::from_value::<vectors::UpsertRequest>(example("post", "/collections/{name}/points"))
            .expect("upsert");
        serde_json::from_value::<vectors::CollectionRequest>(example("post", "/collections")).expect("collection");
        serde_json::from_value::<vectors::DeletePointsRequest>(example("delete", "/collections/{name}/points"))
            .expect("delete points");
        serde_json::from_value::<identity::UserRequest>(example("post", "/users")).expect("user");
        serde_json::from_value::<identity::UserUpdate>(example("put", "/users/{name}")).expect("user update");
        serde_json::from_value::<identity::ApiKeyRequest>(example("post", "/apikeys")).expect("api key");
        serde_json::from_value::<identity::TenantRequest>(example("post", "/tenants")).expect("tenant");
        serde_json::from_value::<cluster::JoinRequest>(example("post", "/cluster/add-learner")).expect("join");
        serde_json::from_value::<external::ExternalAiRequest>(example("post", "/external/ai")).expect("external");
        serde_json::from_value::<super::super::external::OpenAiEmbeddingsRequest>(example("post", "/v1/embeddings"))
            .expect("embeddings");
        serde_json::from_value::<plugins::LoadRequest>(example("post", "/plugins/load")).expect("plugin");
        // Control: an example of the wrong shape is refused.
        assert!(serde_json::from_value::<tasks::SubmitRequest>(json!({"kind": "x"})).is_err());
    }
}
