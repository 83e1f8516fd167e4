//! End-to-end tests across processes: the `katib` binary on real experiments, and
//! Katib's own Python gRPC stubs (PyPI `kubeflow-katib`) against our services.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod algorithms;
mod cli;
mod db;
mod early_stopping;
mod grpc_compat;
mod harness;
mod kube;
