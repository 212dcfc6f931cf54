"""The database side: collections vectorized by Weaviate's multi2vec-bind module through our
server, folder ingestion, search by any input kind, composed queries and zero-shot
classification, and a local Weaviate for demos and tests. Built on weaviate-client v4.

    from imagebind_vectorizer.weaviate import connect, make_spec, create_collection, ingest_folder
    client = connect("http://127.0.0.1:8080")
    media = create_collection(client, make_spec("Media"))
    report = ingest_folder(media, Path("my_media"))
"""

from imagebind_vectorizer.weaviate.classify import classify
from imagebind_vectorizer.weaviate.client import connect
from imagebind_vectorizer.weaviate.collections import (
    CollectionSpec,
    VectorSpec,
    create_collection,
    delete_collection,
    get_collection,
    make_spec,
)
from imagebind_vectorizer.weaviate.ingest import IngestReport, ingest_folder
from imagebind_vectorizer.weaviate.local import LocalVectorizer, LocalWeaviate, find_weaviate_binary
from imagebind_vectorizer.weaviate.search import QueryInput, SearchResult, compose_vector, search
from imagebind_vectorizer.weaviate.vectorizer import VectorizerClient

__all__ = [
    "CollectionSpec",
    "IngestReport",
    "LocalVectorizer",
    "LocalWeaviate",
    "QueryInput",
    "SearchResult",
    "VectorSpec",
    "VectorizerClient",
    "classify",
    "compose_vector",
    "connect",
    "create_collection",
    "delete_collection",
    "find_weaviate_binary",
    "get_collection",
    "ingest_folder",
    "make_spec",
    "search",
]
