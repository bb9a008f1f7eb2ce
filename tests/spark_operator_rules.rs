//! The Kubeflow Spark Operator's submission rules as the test fixture reproduces them
//! (`support::spark_operator`): the guide's SparkApplication and each rule, checked against maps written by hand.
//! Here rather than beside the fixture, so that they run once and not in every test binary that uses `support`.

mod support;

use std::collections::BTreeMap;

use serde_json::{Value, json};
use support::spark_operator::*;

const GUIDE_YAML: &str = include_str!("fixtures/spark/guide-sparkapplication.yaml");

fn guide_app() -> Value {
    serde_norway::from_str(GUIDE_YAML).expect("the guide's SparkApplication is YAML")
}

fn minimal_app(spec: Value) -> Value {
    json!({
        "apiVersion": "sparkoperator.k8s.io/v1beta2",
        "kind": "SparkApplication",
        "metadata": {"name": "app", "namespace": "ns"},
        "spec": spec,
    })
}

fn map(entries: &[(&str, &str)]) -> BTreeMap<String, String> {
    entries.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

/// The confs every submission of `app` in `ns` carries, whatever its spec (webhook defaults not included).
fn always(name: &str, ns: &str, mutated: bool) -> Vec<(String, String)> {
    let mut confs = vec![
        ("spark.kubernetes.namespace".to_owned(), ns.to_owned()),
        ("spark.kubernetes.submission.waitAppCompletion".to_owned(), "false".to_owned()),
        ("spark.kubernetes.driver.pod.name".to_owned(), format!("{name}-driver")),
    ];
    for role in ["driver", "executor"] {
        let label = |key: &str| format!("spark.kubernetes.{role}.label.sparkoperator.k8s.io/{key}");
        confs.push((label("app-name"), name.to_owned()));
        confs.push((label("launched-by-spark-operator"), "true".to_owned()));
        confs.push((label("submission-id"), SUBMISSION_ID.to_owned()));
        if mutated {
            confs.push((label("mutated-by-spark-operator"), "true".to_owned()));
        }
    }
    confs
}

#[test]
fn the_guide_example_becomes_the_expected_confs() {
    let submission = operator_submission(&guide_app()).expect("the guide's application converts");

    // Written out from the rules, one line per conf.
    let expected = map(&[
        // namespaceOption, imageOption, submissionWaitAppCompletionOption
        ("spark.kubernetes.namespace", "spark-jobs"),
        ("spark.kubernetes.container.image", "apache/spark-py:v3.5.0"),
        ("spark.kubernetes.submission.waitAppCompletion", "false"),
        // sparkConfOption (the dynamic allocation ones are passed again, with the same values, below)
        ("spark.kubernetes.scheduler.name", "muster"),
        // driverPodNameOption
        ("spark.kubernetes.driver.pod.name", "etl-daily-orders-driver"),
        // driverConfOption
        ("spark.kubernetes.driver.label.sparkoperator.k8s.io/app-name", "etl-daily-orders"),
        ("spark.kubernetes.driver.label.sparkoperator.k8s.io/launched-by-spark-operator", "true"),
        ("spark.kubernetes.driver.label.sparkoperator.k8s.io/mutated-by-spark-operator", "true"),
        ("spark.kubernetes.driver.label.sparkoperator.k8s.io/submission-id", SUBMISSION_ID),
        ("spark.kubernetes.driver.container.image", "apache/spark-py:v3.5.0"),
        ("spark.driver.cores", "1"),
        ("spark.kubernetes.driver.limit.cores", "1200m"),
        ("spark.driver.memory", "2g"),
        ("spark.kubernetes.authenticate.driver.serviceAccountName", "spark"),
        ("spark.kubernetes.driver.label.workload", "spark-driver"),
        // executorConfOption
        ("spark.kubernetes.executor.label.sparkoperator.k8s.io/app-name", "etl-daily-orders"),
        ("spark.kubernetes.executor.label.sparkoperator.k8s.io/launched-by-spark-operator", "true"),
        ("spark.kubernetes.executor.label.sparkoperator.k8s.io/mutated-by-spark-operator", "true"),
        ("spark.kubernetes.executor.label.sparkoperator.k8s.io/submission-id", SUBMISSION_ID),
        ("spark.executor.instances", "2"),
        ("spark.kubernetes.executor.container.image", "apache/spark-py:v3.5.0"),
        ("spark.executor.cores", "2"),
        ("spark.executor.memory", "4g"),
        ("spark.executor.memoryOverhead", "1g"),
        ("spark.kubernetes.executor.label.workload", "spark-executor"),
        // dynamicAllocationOption
        ("spark.dynamicAllocation.enabled", "true"),
        ("spark.dynamicAllocation.initialExecutors", "2"),
        ("spark.dynamicAllocation.minExecutors", "2"),
        ("spark.dynamicAllocation.maxExecutors", "10"),
        ("spark.dynamicAllocation.shuffleTracking.enabled", "true"),
        // Not here: driver/executor nodeSelector and executor tolerations (pod webhook).
    ]);
    assert_eq!(submission.confs, expected);
    assert_eq!(submission.app_name, "etl-daily-orders");
    assert_eq!(submission.namespace, "spark-jobs");
    assert_eq!(submission.deploy_mode, "cluster");
    assert_eq!(submission.main_application_file.as_deref(), Some("local:///opt/spark/examples/src/main/python/pi.py"));
    assert_eq!(submission.main_class, None);
    assert!(submission.arguments.is_empty());
    assert!(submission.other_args.is_empty());

    let args = submission.spark_submit_args();
    assert_eq!(args[..4], ["--deploy-mode", "cluster", "--name", "etl-daily-orders"]);
    assert_eq!(args.last().map(String::as_str), Some("local:///opt/spark/examples/src/main/python/pi.py"));
    assert_eq!(args.iter().filter(|a| *a == "--conf").count(), expected.len());
}

#[test]
fn spark_conf_loses_to_fields_passed_after_it_and_wins_over_those_before() {
    let app = minimal_app(json!({
        "type": "Scala",
        "sparkVersion": "3.5.0",
        "mode": "cluster",
        "image": "field/image:1",
        "imagePullPolicy": "Always",
        "mainClass": "org.example.Main",
        "mainApplicationFile": "local:///app.jar",
        "sparkConf": {
            // Passed before sparkConf: sparkConf wins.
            "spark.kubernetes.namespace": "from-conf",
            "spark.kubernetes.container.image": "conf/image:2",
            "spark.kubernetes.container.image.pullPolicy": "Never",
            "spark.kubernetes.submission.waitAppCompletion": "true",
            // Passed after sparkConf: the fields win.
            "spark.driver.memory": "8g",
            "spark.executor.cores": "4",
            "spark.executor.instances": "7",
            "spark.kubernetes.executor.label.team": "conf",
            "spark.dynamicAllocation.maxExecutors": "99",
            // No field for it: verbatim.
            "spark.kubernetes.scheduler.name": "muster",
            // Never copied; used for the pod name conf instead.
            "spark.kubernetes.driver.pod.name": "custom-driver",
        },
        "driver": {"cores": 1, "memory": "2g"},
        "executor": {"cores": 2, "instances": 3, "memory": "4g", "labels": {"team": "field"}},
        "dynamicAllocation": {"enabled": true, "maxExecutors": 10},
    }));
    let confs = operator_submission(&app).unwrap().confs;
    let get = |key: &str| confs.get(key).map(String::as_str);

    assert_eq!(get("spark.kubernetes.namespace"), Some("from-conf"));
    assert_eq!(get("spark.kubernetes.container.image"), Some("conf/image:2"));
    assert_eq!(get("spark.kubernetes.container.image.pullPolicy"), Some("Never"));
    assert_eq!(get("spark.kubernetes.submission.waitAppCompletion"), Some("true"));
    assert_eq!(get("spark.kubernetes.driver.container.image"), Some("field/image:1"));
    assert_eq!(get("spark.driver.memory"), Some("2g"));
    assert_eq!(get("spark.executor.cores"), Some("2"));
    assert_eq!(get("spark.executor.instances"), Some("3"));
    assert_eq!(get("spark.kubernetes.executor.label.team"), Some("field"));
    assert_eq!(get("spark.dynamicAllocation.maxExecutors"), Some("10"));
    assert_eq!(get("spark.kubernetes.scheduler.name"), Some("muster"));
    assert_eq!(get("spark.kubernetes.driver.pod.name"), Some("custom-driver"));
    assert_eq!(operator_submission(&app).unwrap().namespace, "from-conf");

    // spec.driver.podName beats the sparkConf pod name.
    let mut with_pod_name = app.clone();
    with_pod_name["spec"]["driver"]["podName"] = json!("named-driver");
    let confs = operator_submission(&with_pod_name).unwrap().confs;
    assert_eq!(confs["spark.kubernetes.driver.pod.name"], "named-driver");
}

#[test]
fn gpus_are_no_confs() {
    let app = minimal_app(json!({
        "type": "Python",
        "sparkVersion": "3.5.0",
        "driver": {"cores": 1, "memory": "1g", "gpu": {"name": "nvidia.com/gpu", "quantity": 1}},
        "executor": {"cores": 1, "memory": "1g", "instances": 1, "gpu": {"name": "nvidia.com/gpu", "quantity": 2}},
    }));
    let with_gpu = operator_submission(&app).unwrap();
    assert!(
        with_gpu.confs.keys().all(|key| !key.contains(".resource.") && !key.contains("gpu")),
        "the webhook sets the GPU limit, no conf does: {:?}",
        with_gpu.confs
    );
    let mut without = app.clone();
    without["spec"]["driver"].as_object_mut().unwrap().remove("gpu");
    without["spec"]["executor"].as_object_mut().unwrap().remove("gpu");
    assert_eq!(operator_submission(&without).unwrap().confs, with_gpu.confs);

    let mut bad = app;
    bad["spec"]["executor"]["gpu"]["quantity"] = json!("2");
    let err = operator_submission(&bad).unwrap_err();
    assert!(err.contains("spec.executor.gpu.quantity"), "{err}");
}

#[test]
fn dynamic_allocation_confs() {
    let spec = |da: Value| {
        minimal_app(json!({
            "type": "Scala",
            "sparkVersion": "3.5.0",
            "mainApplicationFile": "local:///app.jar",
            "driver": {},
            "executor": {},
            "dynamicAllocation": da,
        }))
    };
    let da_confs = |da: Value| -> BTreeMap<String, String> {
        operator_submission(&spec(da))
            .unwrap()
            .confs
            .into_iter()
            .filter(|(key, _)| key.starts_with("spark.dynamicAllocation.") || key == "spark.executor.instances")
            .collect()
    };

    // Enabled alone: shuffle tracking defaults to true; the defaulter leaves instances unset.
    assert_eq!(
        da_confs(json!({"enabled": true})),
        map(&[
            ("spark.dynamicAllocation.enabled", "true"),
            ("spark.dynamicAllocation.shuffleTracking.enabled", "true")
        ])
    );
    assert_eq!(
        da_confs(json!({
            "enabled": true,
            "initialExecutors": 1,
            "minExecutors": 0,
            "maxExecutors": 5,
            "shuffleTrackingEnabled": false,
            "shuffleTrackingTimeout": 60000,
        })),
        map(&[
            ("spark.dynamicAllocation.enabled", "true"),
            ("spark.dynamicAllocation.initialExecutors", "1"),
            ("spark.dynamicAllocation.minExecutors", "0"),
            ("spark.dynamicAllocation.maxExecutors", "5"),
            ("spark.dynamicAllocation.shuffleTracking.enabled", "false"),
            ("spark.dynamicAllocation.shuffleTracking.timeout", "60000"),
        ])
    );
    // Disabled: nothing at all, whatever else is set (and no sparkConf, so no default instances either).
    assert_eq!(da_confs(json!({"enabled": false, "minExecutors": 2, "maxExecutors": 10})), BTreeMap::new());

    let err = operator_submission(&spec(json!({"enabled": "yes"}))).unwrap_err();
    assert!(err.contains("spec.dynamicAllocation.enabled") && err.contains("a boolean"), "{err}");
}

#[test]
fn spec_node_selector_is_a_conf_for_both_pods_and_pod_node_selectors_are_not() {
    let app = minimal_app(json!({
        "type": "Python",
        "sparkVersion": "3.5.0",
        "nodeSelector": {"pool": "spark", "zone": "a"},
        "sparkConf": {
            "spark.kubernetes.node.selector.zone": "b",
            "spark.kubernetes.node.selector.disk": "ssd",
            "spark.kubernetes.driver.node.selector.tier": "on-demand",
        },
        "driver": {"nodeSelector": {"karpenter.sh/capacity-type": "on-demand"}},
        "executor": {"nodeSelector": {"workload": "spark-executor"}},
    }));
    let selectors: BTreeMap<String, String> =
        operator_submission(&app).unwrap().confs.into_iter().filter(|(key, _)| key.contains("node.selector")).collect();
    assert_eq!(
        selectors,
        map(&[
            ("spark.kubernetes.node.selector.pool", "spark"),
            // spec.nodeSelector is passed after sparkConf.
            ("spark.kubernetes.node.selector.zone", "a"),
            ("spark.kubernetes.node.selector.disk", "ssd"),
            ("spark.kubernetes.driver.node.selector.tier", "on-demand"),
            // Nothing from spec.driver.nodeSelector or spec.executor.nodeSelector: the webhook's.
        ])
    );
}

#[test]
fn metadata_labels_go_to_both_pods_and_lose_to_pod_labels() {
    let mut app = minimal_app(json!({
        "type": "Java",
        "sparkVersion": "3.5.0",
        "driver": {"labels": {"team": "driver-team"}, "annotations": {"a": "b"}, "envVars": {"X": "1"}},
        "executor": {"envVars": {"Y": "2"}, "javaOptions": "-Dx=y", "deleteOnTermination": false},
    }));
    app["metadata"]["labels"] = json!({"team": "app-team", "cost-center": "42"});
    let confs = operator_submission(&app).unwrap().confs;
    assert_eq!(confs["spark.kubernetes.driver.label.team"], "driver-team");
    assert_eq!(confs["spark.kubernetes.executor.label.team"], "app-team");
    assert_eq!(confs["spark.kubernetes.driver.label.cost-center"], "42");
    assert_eq!(confs["spark.kubernetes.executor.label.cost-center"], "42");
    assert_eq!(confs["spark.kubernetes.driver.annotation.a"], "b");
    assert_eq!(confs["spark.kubernetes.driverEnv.X"], "1");
    assert_eq!(confs["spark.executorEnv.Y"], "2");
    assert_eq!(confs["spark.executor.extraJavaOptions"], "-Dx=y");
    assert_eq!(confs["spark.kubernetes.executor.deleteOnTermination"], "false");
}

#[test]
fn pod_templates_become_files_and_drop_the_mutated_label_from_spark_3() {
    let app = |version: &str| {
        minimal_app(json!({
            "type": "Python",
            "sparkVersion": version,
            "driver": {"template": {"spec": {"priorityClassName": "high"}}},
            "executor": {},
        }))
    };
    let confs = operator_submission(&app("3.5.0")).unwrap().confs;
    assert_eq!(
        confs["spark.kubernetes.driver.podTemplateFile"],
        format!("/tmp/spark/{SUBMISSION_ID}/driver-pod-template.yaml")
    );
    assert_eq!(confs["spark.kubernetes.driver.podTemplateContainerName"], "spark-kubernetes-driver");
    assert!(!confs.contains_key("spark.kubernetes.executor.podTemplateFile"));
    assert!(!confs.contains_key("spark.kubernetes.driver.label.sparkoperator.k8s.io/mutated-by-spark-operator"));
    assert_eq!(confs["spark.kubernetes.executor.label.sparkoperator.k8s.io/mutated-by-spark-operator"], "true");

    for old in ["2.4.8", "3.0.0-rc1", "", "latest", "03.1.0"] {
        let confs = operator_submission(&app(old)).unwrap().confs;
        assert_eq!(
            confs.get("spark.kubernetes.driver.label.sparkoperator.k8s.io/mutated-by-spark-operator"),
            Some(&"true".to_owned()),
            "sparkVersion {old:?}"
        );
    }
    for new in ["3", "3.0", "v3.0.0", "3.0.0", "3.5.1+build.7", "4.0.0"] {
        assert!(!spark_version_before_3(new), "{new}");
    }
}

#[test]
fn webhook_defaults() {
    let bare = |spark_conf: Option<Value>| {
        let mut spec = json!({"type": "Python", "sparkVersion": "3.5.0", "driver": {}, "executor": {}});
        if let Some(conf) = spark_conf {
            spec["sparkConf"] = conf;
        }
        minimal_app(spec)
    };
    let defaults = map(&[
        ("spark.driver.cores", "1"),
        ("spark.driver.memory", "1g"),
        ("spark.executor.cores", "1"),
        ("spark.executor.memory", "1g"),
    ]);
    let mut expected: BTreeMap<String, String> = always("app", "ns", true).into_iter().collect();
    expected.extend(defaults.clone());

    // Without sparkConf the defaulter never sets the instances (it only looks inside a present sparkConf).
    let submission = operator_submission(&bare(None)).unwrap();
    assert_eq!(submission.confs, expected);
    assert_eq!(submission.deploy_mode, "cluster");

    let confs = operator_submission(&bare(Some(json!({})))).unwrap().confs;
    assert_eq!(confs["spark.executor.instances"], "1");
    let confs = operator_submission(&bare(Some(json!({"spark.dynamicAllocation.enabled": "True"})))).unwrap().confs;
    assert!(!confs.contains_key("spark.executor.instances"));
    let confs = operator_submission(&bare(Some(json!({"spark.executor.cores": "3"})))).unwrap().confs;
    assert_eq!(confs["spark.executor.cores"], "3");

    // Without the webhook: no defaults at all, and an empty --deploy-mode.
    let plain = operator_submission_with(&bare(None), &OperatorOptions { webhook_enabled: false }).unwrap();
    assert_eq!(plain.confs, always("app", "ns", true).into_iter().collect::<BTreeMap<_, _>>());
    assert_eq!(plain.deploy_mode, "");
}

#[test]
fn dependencies_proxy_user_and_secrets() {
    let app = minimal_app(json!({
        "type": "Scala",
        "sparkVersion": "3.5.0",
        "mainClass": "org.example.Main",
        "mainApplicationFile": "local:///app.jar",
        "arguments": ["--day", "2024-01-01"],
        "proxyUser": "etl",
        "deps": {"jars": ["a.jar", "b.jar"], "pyFiles": ["x.py"]},
        "hadoopConf": {"fs.s3a.fast.upload": "true"},
        "imagePullSecrets": ["one", "two"],
        "driver": {
            "secrets": [{"name": "gcp", "path": "/mnt/secrets/", "secretType": "GCPServiceAccount"}],
            "envSecretKeyRefs": {"TOKEN": {"name": "tokens", "key": "api"}},
        },
        "executor": {},
    }));
    let submission = operator_submission(&app).unwrap();
    assert_eq!(submission.other_args, ["--jars", "a.jar,b.jar", "--py-files", "x.py", "--proxy-user", "etl"]);
    assert_eq!(submission.main_class.as_deref(), Some("org.example.Main"));
    assert_eq!(submission.arguments, ["--day", "2024-01-01"]);
    let confs = &submission.confs;
    assert_eq!(confs["spark.hadoop.fs.s3a.fast.upload"], "true");
    assert_eq!(confs["spark.kubernetes.container.image.pullSecrets"], "one,two");
    assert_eq!(confs["spark.kubernetes.driver.secrets.gcp"], "/mnt/secrets/");
    assert_eq!(confs["spark.kubernetes.driverEnv.GOOGLE_APPLICATION_CREDENTIALS"], "/mnt/secrets/key.json");
    assert_eq!(confs["spark.kubernetes.driver.secretKeyRef.TOKEN"], "tokens:api");
    let args = submission.spark_submit_args();
    assert_eq!(args[args.len() - 3..], ["local:///app.jar", "--day", "2024-01-01"]);
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let with_spec = |spec: Value| minimal_app(spec);
    let cases: Vec<(Value, &[&str])> = vec![
        (with_spec(json!({"driver": {}, "executor": {"cores": "two"}})), &["spec.executor.cores", "\"two\""]),
        (with_spec(json!({"driver": {"cores": 1.5}, "executor": {}})), &["spec.driver.cores", "integer"]),
        (with_spec(json!({"driver": {}, "executor": {"cores": 0}})), &["spec.executor.cores", "at least 1"]),
        (with_spec(json!({"driver": {}, "executor": {"instances": 3_000_000_000_u64}})), &["int32"]),
        (with_spec(json!({"sparkConf": {"spark.dynamicAllocation.enabled": true}})), &["sparkConf", "quote"]),
        (with_spec(json!({"type": "Rust"})), &["spec.type", "Rust"]),
        (with_spec(json!({"mode": "local"})), &["spec.mode"]),
        (with_spec(json!({"driver": {"labels": ["a"]}})), &["spec.driver.labels", "object"]),
        (with_spec(json!({"arguments": "--x"})), &["spec.arguments", "array"]),
        (with_spec(json!({"executor": {"tolerations": {"key": "x"}}})), &["spec.executor.tolerations"]),
        (with_spec(json!({"kerberos": {"principal": "x"}})), &["spec.kerberos", "not modelled"]),
        (with_spec(json!("spec")), &["spec", "object"]),
        (json!({"metadata": {"namespace": "ns"}, "spec": {}}), &["metadata.name"]),
        (json!({"metadata": {"name": "a"}, "spec": {}}), &["metadata.namespace"]),
        (json!({"metadata": {"name": "a", "namespace": "ns"}}), &["spec"]),
        (json!([1, 2]), &["SparkApplication", "object"]),
        (json!(null), &["SparkApplication"]),
    ];
    for (app, needles) in cases {
        let err = operator_submission(&app).expect_err(&format!("{app} is malformed"));
        for needle in needles {
            assert!(err.contains(needle), "error {err:?} for {app} should mention {needle:?}");
        }
    }
}

#[test]
fn covered_rules_mark_every_webhook_field() {
    for field in ["nodeSelector", "tolerations", "affinity", "gpu", "env,", "schedulerName", "priorityClassName"] {
        assert!(
            COVERED_RULES.iter().any(|rule| rule.contains(field) && rule.contains("not a conf: webhook")),
            "{field}"
        );
    }
    assert!(COVERED_RULES.iter().all(|rule| rule.contains("->") && !rule.contains('\n')));
}
