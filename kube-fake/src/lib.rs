//! An in-memory Kubernetes API server behind kube's `Client`, shared by the
//! operator's and the API's tests.
