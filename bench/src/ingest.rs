//! `synod-bench ingest`: how fast points are acknowledged (stored through
//! Raft with fsync) in each form a client can send them: REST with JSON
//! numbers, REST with base64 vectors (the compact form), and gRPC. Every
//! form sends the same points in batches, with a few requests in flight;
//! the HNSW index is built in the background meanwhile, as for any user,
//! and the time until it holds every point is printed too.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::{Value, json};
use synod_store::vector_search::random_vectors;

pub struct Params {
    pub n: usize,
    pub dim: usize,
    pub forms: Vec<String>,
    pub batch: usize,
    pub in_flight: usize,
    pub nodes: usize,
    pub dir: Option<PathBuf>,
}

/// JSON numbers of 384 components pass the default 2 MiB body cap at
/// about 270 points; this many leaves room for any dimension up to 1024.
const JSON_BATCH: usize = 200;

fn unit(mut v: Vec<f32>) -> Vec<f32> {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt().max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= n);
    v
}

pub async fn run(p: Params) -> anyhow::Result<()> {
    let (root, _guard) = crate::work_dir(p.dir.clone())?;
    let mut c = crate::local_cluster(&root)?;
    c.add_node(None, &[])?;
    c.wait_ready(0, Duration::from_secs(30)).await?;
    for _ in 1..p.nodes {
        c.add_node(Some(0), &[])?;
    }
    if p.nodes > 1 {
        c.wait_voters(0, p.nodes, Duration::from_secs(60)).await?;
    }
    let leader = c.wait_for("a leader", Duration::from_secs(10), || c.leader_index(0)).await?;
    let http = c.client_builder()?.timeout(Duration::from_secs(120)).pool_max_idle_per_host(64).build()?;
    let url = c.nodes[leader].url();
    let points: Arc<Vec<Vec<f32>>> = Arc::new(random_vectors(p.n, p.dim, 7).into_iter().map(unit).collect());
    let channel =
        tonic::transport::Endpoint::from_shared(format!("http://{}", c.nodes[leader].grpc))?.connect().await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {}", c.admin_token).parse()?;
    let grpc =
        synod_api::pb::vectors_client::VectorsClient::with_interceptor(channel, move |mut req: tonic::Request<()>| {
            req.metadata_mut().insert("authorization", bearer.clone());
            Ok(req)
        })
        .max_encoding_message_size(64 << 20);

    for form in &p.forms {
        let name = format!("ingest_{form}");
        let body = json!({"name": name, "dimension": p.dim, "metric": "cosine"});
        let r = http.post(format!("{url}/collections")).json(&body).send().await?;
        anyhow::ensure!(r.status().is_success(), "create collection: {}", r.text().await?);
        let batch = if form == "json" { p.batch.min(JSON_BATCH) } else { p.batch };
        let starts: Vec<usize> = (0..p.n).step_by(batch).collect();
        let t = Instant::now();
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(starts)
            .map(|start| {
                let (http, url, name, points, form, mut grpc) =
                    (http.clone(), url.clone(), name.clone(), points.clone(), form.clone(), grpc.clone());
                async move {
                    let range = start..(start + batch).min(points.len());
                    if form == "grpc" {
                        let req = synod_api::pb::UpsertPointsRequest {
                            collection: name,
                            points: range
                                .map(|i| synod_api::pb::VectorPoint {
                                    id: i.to_string(),
                                    numeric_id: true,
                                    vector: points[i].clone(),
                                    ..Default::default()
                                })
                                .collect(),
                        };
                        grpc.upsert_points(req).await?;
                        return Ok(());
                    }
                    let pts: Vec<Value> = range
                        .map(|i| match form.as_str() {
                            "json" => json!({"id": i, "vector": points[i]}),
                            _ => json!({"id": i, "vector": synod_api::service::vector_form::encode(&points[i])}),
                        })
                        .collect();
                    let r = http
                        .post(format!("{url}/collections/{name}/points"))
                        .json(&json!({"points": pts}))
                        .send()
                        .await?;
                    anyhow::ensure!(r.status().is_success(), "upsert: {}", r.text().await?);
                    Ok(())
                }
            })
            .buffer_unordered(p.in_flight)
            .collect()
            .await;
        for r in results {
            r?;
        }
        let acked = t.elapsed().as_secs_f64();
        crate::vectors::wait_indexed(&c, &http, &url).await?;
        let what = match form.as_str() {
            "json" => "REST, JSON numbers",
            "base64" => "REST, base64 vectors",
            _ => "gRPC",
        };
        println!(
            "ingest {form}: {} points of {}-d in {acked:.2} s: {:.0} points/s ({what}, batches of {batch}, {} in flight, {} node{}, through Raft with fsync); all in the HNSW index after {:.1} s",
            p.n,
            p.dim,
            p.n as f64 / acked,
            p.in_flight,
            p.nodes,
            if p.nodes > 1 { "s" } else { "" },
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
