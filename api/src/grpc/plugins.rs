//! Public gRPC `synod.v1.Plugins`: thin adapters over [`crate::service::plugins`].
//! Request messages are destructured exhaustively.

use tonic::{Request, Response, Status};

use crate::error::ApiError;
use crate::grpc::{authorize, timed};
use crate::pb::plugins_server::Plugins;
use crate::pb::{self, *};
use crate::service::SharedNode;
use crate::service::plugins::{self, PluginView};

pub struct PluginsGrpc {
    node: SharedNode,
}

impl PluginsGrpc {
    pub fn new(node: SharedNode) -> Self {
        PluginsGrpc { node }
    }
}

fn info(p: PluginView) -> pb::PluginInfo {
    let PluginView { name, kind, version, description, sha256, nodes_ready, manifest, previous, loaded_at_ms } = p;
    pb::PluginInfo {
        name,
        kind,
        version,
        description,
        sha256: sha256.unwrap_or_default(),
        nodes_ready,
        manifest_json: manifest.map(|m| m.to_string()).unwrap_or_default(),
        previous: previous
            .into_iter()
            .map(|v| PluginVersionInfo {
                version: v.version,
                sha256: v.sha256,
                loaded_at_ms: v.loaded_at_ms,
                size: v.size,
            })
            .collect(),
        loaded_at_ms: loaded_at_ms.unwrap_or(0),
    }
}

#[tonic::async_trait]
impl Plugins for PluginsGrpc {
    async fn list(&self, req: Request<ListPluginsRequest>) -> Result<Response<PluginList>, Status> {
        let ctx = authorize(&self.node, &req, "Plugins.List")?;
        let ListPluginsRequest {} = req.into_inner();
        timed("Plugins.List", async {
            let plugins = plugins::do_list_plugins(&ctx, &self.node)?.into_iter().map(info).collect();
            Ok(PluginList { plugins })
        })
        .await
    }

    async fn info(&self, req: Request<PluginName>) -> Result<Response<pb::PluginInfo>, Status> {
        let ctx = authorize(&self.node, &req, "Plugins.Info")?;
        let PluginName { name } = req.into_inner();
        timed("Plugins.Info", async { Ok(info(plugins::do_get_plugin(&ctx, &self.node, &name)?)) }).await
    }

    async fn load(&self, req: Request<LoadPluginRequest>) -> Result<Response<pb::PluginInfo>, Status> {
        let ctx = authorize(&self.node, &req, "Plugins.Load")?;
        let LoadPluginRequest { manifest_json, module } = req.into_inner();
        timed("Plugins.Load", async {
            let manifest = serde_json::from_str(&manifest_json)
                .map_err(|e| ApiError::InvalidArgument(format!("manifest_json: {e}")))?;
            let spec = plugins::LoadSpec::new(manifest, (!module.is_empty()).then_some(module))?;
            Ok(info(plugins::do_load_plugin(&ctx, &self.node, spec).await?))
        })
        .await
    }

    async fn unload(&self, req: Request<PluginName>) -> Result<Response<UnloadPluginReply>, Status> {
        let ctx = authorize(&self.node, &req, "Plugins.Unload")?;
        let PluginName { name } = req.into_inner();
        timed("Plugins.Unload", async {
            plugins::do_unload_plugin(&ctx, &self.node, &name).await?;
            Ok(UnloadPluginReply { unloaded: name })
        })
        .await
    }

    async fn list_models(&self, req: Request<ListModelsRequest>) -> Result<Response<ModelList>, Status> {
        let ctx = authorize(&self.node, &req, "Plugins.ListModels")?;
        let ListModelsRequest {} = req.into_inner();
        timed("Plugins.ListModels", async {
            let models = plugins::do_list_models(&ctx, &self.node)?
                .into_iter()
                .map(|m| pb::ModelInfo {
                    name: m.name,
                    nodes_ready: m.nodes_ready,
                    here_json: m.here.map(|h| h.to_string()).unwrap_or_default(),
                })
                .collect();
            Ok(ModelList { models })
        })
        .await
    }

    async fn embed(&self, req: Request<EmbedRequest>) -> Result<Response<EmbedReply>, Status> {
        let ctx = authorize(&self.node, &req, "Plugins.Embed")?;
        let EmbedRequest { model, input, dimensions } = req.into_inner();
        timed("Plugins.Embed", async {
            let req = crate::service::embeddings::EmbedRequest {
                model,
                texts: input,
                dimensions: (dimensions > 0).then_some(dimensions as usize),
            };
            let r = crate::service::embeddings::do_embed(&ctx, &self.node, req).await?;
            Ok(EmbedReply {
                model: r.model,
                embeddings: r.embeddings.into_iter().map(|values| Embedding { values }).collect(),
                prompt_tokens: r.prompt_tokens,
            })
        })
        .await
    }
}
