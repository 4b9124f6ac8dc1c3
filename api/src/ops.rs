//! The one table of operations: every capability of the public API, once,
//! with who may call it and where it is reachable. The REST router, the
//! REST access check and the gRPC access check all read this table, so an
//! operation cannot be reachable without a rule, and its two adapters
//! cannot disagree about the rule. The role a rule needs is checked here
//! ([`permit`]) and nowhere else: the `do_*` functions check only what a
//! role alone cannot say (the caller's tenant, ownership of a key, a key
//! no stronger than its creator).
//!
//! Adding an operation: a row here, its `do_*` function in the service
//! layer, a handler in `rest.rs` and a method in the gRPC adapter (with its
//! `rpc` in the proto). An operation reachable one way only says why in
//! `only`; a test holds every other one to having both.

/// Who may call an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, without credentials.
    Public,
    /// `/metrics`: public unless `security.metrics_auth`.
    Metrics,
    /// Any authenticated caller (reader, user, admin).
    Read,
    /// Users and admins.
    Write,
    /// Admins.
    Admin,
}

/// One operation of the public API.
#[derive(Debug, Clone, Copy)]
pub struct Operation {
    pub name: &'static str,
    pub access: Access,
    /// Its REST routes, `(method, path)`: aliases share the handler.
    pub rest: &'static [(&'static str, &'static str)],
    /// Its gRPC methods, `Service.Method`.
    pub grpc: &'static [&'static str],
    /// Why it is reachable one way only (`None`: both).
    pub only: Option<&'static str>,
}

/// Whether `ctx`'s role passes `rule`.
pub fn permit(ctx: &crate::auth::AuthContext, rule: Access) -> crate::error::Result<()> {
    use crate::auth::Role;
    let ok = match rule {
        Access::Public | Access::Read => true,
        // Checked only with security.metrics_auth: every tenant's counts.
        Access::Metrics => ctx.role == Role::Admin,
        Access::Write => matches!(ctx.role, Role::Admin | Role::User),
        Access::Admin => ctx.role == Role::Admin,
    };
    if ok {
        Ok(())
    } else {
        Err(crate::error::ApiError::PermissionDenied(format!(
            "{} ({}) may not do this",
            ctx.subject,
            ctx.role.as_str()
        )))
    }
}

const fn op(
    name: &'static str,
    access: Access,
    rest: &'static [(&'static str, &'static str)],
    grpc: &'static [&'static str],
) -> Operation {
    Operation { name, access, rest, grpc, only: None }
}

const fn only(
    name: &'static str,
    access: Access,
    rest: &'static [(&'static str, &'static str)],
    grpc: &'static [&'static str],
    why: &'static str,
) -> Operation {
    Operation { name, access, rest, grpc, only: Some(why) }
}

use Access::*;

pub const OPERATIONS: &[Operation] = &[
    op("health", Public, &[("GET", "/health"), ("GET", "/health/ready")], &["Health.Check", "Health.Watch"]),
    only(
        "reflection",
        Public,
        &[],
        &["ServerReflection.ServerReflectionInfo"],
        "gRPC server reflection (v1 and v1alpha): the REST twin is GET /openapi.json",
    ),
    only(
        "openapi",
        Public,
        &[("GET", "/openapi.json"), ("GET", "/docs")],
        &[],
        "the REST API's description; gRPC clients read server reflection instead",
    ),
    only("metrics", Metrics, &[("GET", "/metrics")], &[], "Prometheus scrapes its text format over HTTP"),
    op("metrics_history", Read, &[("GET", "/metrics/history")], &["Cluster.MetricsHistory"]),
    op("login", Public, &[("POST", "/login")], &["Identity.Login"]),
    op("whoami", Read, &[("GET", "/whoami")], &["Identity.WhoAmI"]),
    op("audit", Admin, &[("GET", "/audit")], &["Identity.Audit"]),
    only(
        "dashboard",
        Public,
        &[("GET", "/dashboard"), ("GET", "/dashboard/"), ("GET", "/dashboard/{file}")],
        &[],
        "a browser UI: static files, no data (the pages call the API with the user's credentials)",
    ),
    // Cluster
    op("cluster_status", Read, &[("GET", "/cluster/status")], &["Cluster.Status"]),
    op("registry", Read, &[("GET", "/agents/registry"), ("GET", "/cluster/nodes")], &["Cluster.Registry"]),
    op("get_node", Read, &[("GET", "/cluster/nodes/{id}")], &["Cluster.GetNode"]),
    op("set_labels", Admin, &[("PUT", "/cluster/nodes/{id}/labels")], &["Cluster.SetLabels"]),
    op("state_digest", Admin, &[("GET", "/debug/digest")], &["Cluster.Digest"]),
    op("backup", Admin, &[("GET", "/cluster/backup")], &["Cluster.Backup"]),
    op("promote", Admin, &[("POST", "/cluster/nodes/{id}/promote")], &["Cluster.Promote"]),
    op("demote", Admin, &[("POST", "/cluster/nodes/{id}/demote")], &["Cluster.Demote"]),
    op("remove", Admin, &[("POST", "/cluster/nodes/{id}/remove")], &["Cluster.Remove"]),
    op("transfer_leader", Admin, &[("POST", "/cluster/nodes/{id}/transfer-leader")], &["Cluster.TransferLeader"]),
    op("drain", Admin, &[("POST", "/cluster/nodes/{id}/drain")], &["Cluster.Drain"]),
    op("undrain", Admin, &[("POST", "/cluster/nodes/{id}/undrain")], &["Cluster.Undrain"]),
    op("add_learner", Admin, &[("POST", "/cluster/add-learner"), ("POST", "/cluster/join")], &["Cluster.AddLearner"]),
    // Tasks
    op("submit", Write, &[("POST", "/tasks/submit")], &["Tasks.Submit", "Tasks.SubmitBatch"]),
    op("list_tasks", Read, &[("GET", "/tasks")], &["Tasks.List"]),
    op("task_status", Read, &[("GET", "/tasks/{id}/status")], &["Tasks.Status"]),
    op("task_result", Read, &[("GET", "/tasks/{id}/result")], &["Tasks.Result"]),
    op("cancel_task", Write, &[("POST", "/tasks/{id}/cancel")], &["Tasks.Cancel"]),
    only(
        "watch_tasks",
        Read,
        &[],
        &["Tasks.Watch"],
        "a server stream; REST clients poll /tasks/{id}/status or wait on /tasks/{id}/result?wait=",
    ),
    // Plugins and models
    op("list_plugins", Read, &[("GET", "/plugins/list")], &["Plugins.List"]),
    op("load_plugin", Admin, &[("POST", "/plugins/load")], &["Plugins.Load"]),
    op("plugin_info", Read, &[("GET", "/plugins/{name}")], &["Plugins.Info"]),
    op("unload_plugin", Admin, &[("POST", "/plugins/{name}/unload")], &["Plugins.Unload"]),
    op("list_models", Read, &[("GET", "/models")], &["Plugins.ListModels"]),
    // Identity
    op("list_tenants", Admin, &[("GET", "/tenants")], &["Identity.ListTenants"]),
    op("create_tenant", Admin, &[("POST", "/tenants")], &["Identity.CreateTenant"]),
    op("list_users", Admin, &[("GET", "/users")], &["Identity.ListUsers"]),
    op("create_user", Admin, &[("POST", "/users")], &["Identity.CreateUser"]),
    op("update_user", Admin, &[("PUT", "/users/{name}")], &["Identity.UpdateUser"]),
    op("delete_user", Admin, &[("DELETE", "/users/{name}")], &["Identity.DeleteUser"]),
    op("list_api_keys", Read, &[("GET", "/apikeys")], &["Identity.ListApiKeys"]),
    op("create_api_key", Write, &[("POST", "/apikeys")], &["Identity.CreateApiKey"]),
    op("revoke_api_key", Read, &[("DELETE", "/apikeys/{id}")], &["Identity.RevokeApiKey"]),
    // Vectors
    op("list_collections", Read, &[("GET", "/collections")], &["Vectors.ListCollections"]),
    op("create_collection", Write, &[("POST", "/collections")], &["Vectors.CreateCollection"]),
    op("get_collection", Read, &[("GET", "/collections/{name}")], &["Vectors.GetCollection"]),
    op("delete_collection", Write, &[("DELETE", "/collections/{name}")], &["Vectors.DeleteCollection"]),
    op("upsert_points", Write, &[("POST", "/collections/{name}/points")], &["Vectors.UpsertPoints"]),
    op("delete_points", Write, &[("DELETE", "/collections/{name}/points")], &["Vectors.DeletePoints"]),
    op("get_point", Read, &[("GET", "/collections/{name}/points/{id}")], &["Vectors.GetPoint"]),
    op("search", Read, &[("POST", "/vector/search")], &["Vectors.Search"]),
    op("search_batch", Read, &[("POST", "/vector/search/batch")], &["Vectors.SearchBatch"]),
    // External AI, and embeddings served in OpenAI's wire format
    op("external_ai", Write, &[("POST", "/external/ai")], &["External.Call"]),
    op("external_providers", Read, &[("GET", "/external/providers")], &["External.Providers"]),
    op("embed", Read, &[("POST", "/v1/embeddings")], &["Plugins.Embed"]),
];

/// Every REST route: method, path and rule.
pub fn rest_routes() -> impl Iterator<Item = (&'static str, &'static str, Access)> {
    OPERATIONS.iter().flat_map(|o| o.rest.iter().map(move |(m, p)| (*m, *p, o.access)))
}

/// Every gRPC method (`Service.Method`) and its rule.
pub fn grpc_methods() -> impl Iterator<Item = (&'static str, Access)> {
    OPERATIONS.iter().flat_map(|o| o.grpc.iter().map(move |m| (*m, o.access)))
}

/// The rule of a matched REST route.
pub fn rest_access(method: &str, path: &str) -> Option<Access> {
    rest_routes().find(|(m, p, _)| *m == method && *p == path).map(|(_, _, a)| a)
}

/// The rule of a gRPC method.
pub fn grpc_access(method: &str) -> Option<Access> {
    grpc_methods().find(|(m, _)| *m == method).map(|(_, a)| a)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    const PROTOS: [(&str, &str); 6] = [
        ("Cluster", include_str!("../proto/synod/v1/cluster.proto")),
        ("Tasks", include_str!("../proto/synod/v1/tasks.proto")),
        ("Identity", include_str!("../proto/synod/v1/identity.proto")),
        ("Vectors", include_str!("../proto/synod/v1/vectors.proto")),
        ("Plugins", include_str!("../proto/synod/v1/plugins.proto")),
        ("External", include_str!("../proto/synod/v1/external.proto")),
    ];

    #[test]
    fn every_operation_has_a_rest_and_a_grpc_twin_unless_it_says_why_not() {
        for o in OPERATIONS {
            match o.only {
                None => assert!(
                    !o.rest.is_empty() && !o.grpc.is_empty(),
                    "{} lacks a {} twin and states no reason",
                    o.name,
                    if o.rest.is_empty() { "REST" } else { "gRPC" }
                ),
                Some(why) => {
                    assert!(o.rest.is_empty() != o.grpc.is_empty(), "{}: `only` but reachable both ways", o.name);
                    assert!(why.len() > 20, "{}: say why", o.name);
                }
            }
        }
        // Control: the check notices a missing twin.
        let lonely = op("lonely", Read, &[("GET", "/lonely")], &[]);
        assert!(lonely.only.is_none() && lonely.grpc.is_empty());
    }

    #[test]
    fn names_routes_and_methods_are_unique() {
        let names: BTreeSet<_> = OPERATIONS.iter().map(|o| o.name).collect();
        assert_eq!(names.len(), OPERATIONS.len());
        let routes: BTreeSet<_> = rest_routes().map(|(m, p, _)| (m, p)).collect();
        assert_eq!(routes.len(), rest_routes().count());
        let methods: BTreeSet<_> = grpc_methods().map(|(m, _)| m).collect();
        assert_eq!(methods.len(), grpc_methods().count());
    }

    #[test]
    fn the_table_and_the_protos_name_the_same_grpc_methods() {
        let mut in_protos = BTreeSet::new();
        for (service, proto) in PROTOS {
            for line in proto.lines().map(str::trim).filter(|l| l.starts_with("rpc ")) {
                let name = line[4..].split('(').next().unwrap_or_default().trim();
                in_protos.insert(format!("{service}.{name}"));
            }
        }
        // The standard services (grpc.health.v1, server reflection) come
        // with their own protos, from tonic-health and tonic-reflection.
        in_protos.extend(["Health.Check", "Health.Watch", "ServerReflection.ServerReflectionInfo"].map(String::from));
        let in_table: BTreeSet<String> = grpc_methods().map(|(m, _)| m.to_string()).collect();
        assert_eq!(in_protos, in_table, "gRPC methods without a row, or rows without a method");
    }
}
