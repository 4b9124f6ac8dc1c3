//! Synod's plugins (not built yet; arrives with the tasks issue).
//!
//! It will hold the `Plugin` trait and its registry, the built-ins
//! (Unicode normalizer, HuggingFace `tokenizer.json` tokenizer, hashing
//! vectorizer, the all-MiniLM-L6-v2 sentence-embedding model on candle),
//! the WebAssembly and subprocess loaders, and the external adapters
//! (OpenAI-compatible, HuggingFace, Pinecone, Milvus, Qdrant) with retry,
//! timeout and circuit breaker.
//!
//! Must never touch RocksDB or Raft.
