//! Objects the conversion tests share.

pub use k8s_openapi::api::core::v1::{Node, Pod};
pub use serde_json::json;

use super::*;
pub use crate::core::placement::NodeFacts;
use crate::core::resources::PODS;
pub use crate::core::resources::{CPU, MEMORY};

pub const GI: u64 = 1 << 30;
pub const MI: u64 = 1 << 20;

pub fn pod(value: serde_json::Value) -> Pod {
    serde_json::from_value(value).expect("test pod")
}

pub fn node(value: serde_json::Value) -> Node {
    serde_json::from_value(value).expect("test node")
}

pub fn cpu_mem_pods(millicores: u64, bytes: u64) -> Resources {
    Resources::cpu_mem(millicores, bytes).with(PODS, 1)
}

/// An executor pod as Spark 3.5 creates it for `--executor-memory 4g --conf spark.executor.memoryOverhead=1g`
/// with an executor pod template that tolerates the spot pool's taint.
pub fn spark_executor() -> Pod {
    pod(json!({
        "metadata": {
            "name": "pi-3f1c0e8f-exec-1",
            "namespace": "spark",
            "labels": {
                "spark-app-selector": "spark-0b6b3c5e2a0f4d6f9f3c2d1e0a9b8c7d",
                "spark-app-name": "pi",
                "spark-role": "executor",
                "spark-exec-id": "1",
                "spark-exec-resourceprofile-id": "0",
                "spark-version": "3.5.1"
            },
            "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "pi-driver", "uid": "d-1",
                                 "controller": true}]
        },
        "spec": {
            "schedulerName": "muster",
            "restartPolicy": "Never",
            "nodeSelector": {"pool": "spot"},
            "tolerations": [
                {"key": "workload", "operator": "Equal", "value": "spark-executor", "effect": "NoSchedule"},
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                 "tolerationSeconds": 300}
            ],
            "containers": [{
                "name": "spark-kubernetes-executor",
                "image": "apache/spark:3.5.1",
                "resources": {
                    "requests": {"cpu": "1", "memory": "5120Mi"},
                    "limits": {"memory": "5120Mi"}
                }
            }]
        }
    }))
}

pub fn spot_node() -> Node {
    node(json!({
        "metadata": {"name": "spot-1", "labels": {"pool": "spot", "kubernetes.io/hostname": "spot-1"}},
        "spec": {"taints": [{"key": "workload", "value": "spark-executor", "effect": "NoSchedule"}]},
        "status": {"allocatable": {"cpu": "15900m", "memory": "62Gi", "pods": "110",
                                   "ephemeral-storage": "100Gi", "example.com/fpga": "2"}}
    }))
}
