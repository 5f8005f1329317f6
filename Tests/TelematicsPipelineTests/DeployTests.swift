import Foundation
import TelematicsPipeline
import TelematicsTestSupport
import Testing
import Yams

/// The repository's Deploy/ folder.
private let deploy = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
    .deletingLastPathComponent().appendingPathComponent("Deploy")

/// Every file under Deploy/ whose name ends in one of `extensions`, sorted.
private func files(_ extensions: Set<String>, under folder: URL = deploy) -> [URL] {
    let enumerator = FileManager.default.enumerator(at: folder, includingPropertiesForKeys: nil)
    return (enumerator?.allObjects as? [URL] ?? []).filter { extensions.contains($0.pathExtension) }.sorted { $0.path < $1.path }
}

/// Every YAML document of a file, as Swift values.
private func documents(_ url: URL) throws -> [Any] {
    try Yams.load_all(yaml: String(contentsOf: url, encoding: .utf8)).compactMap { $0 }
}

/// A tool installed by Deploy/setup.sh (Deploy/tools-requirements.txt), run to completion.
private func tool(_ name: String, _ arguments: [String]) throws -> (status: Int32, output: String) {
    try ProcessOutput.run([name] + arguments, withStandardError: true)
}

/// Fails the test (never skips it) when `name` is not on PATH: CI installs it.
private func requireTool(_ name: String) throws {
    let found = try tool("sh", ["-c", "command -v \(name)"]).status == 0
    try #require(found, "\(name) is not installed: run Deploy/setup.sh (it installs Deploy/tools-requirements.txt)")
}

private extension Dictionary where Key == String, Value == Any {
    func at(_ path: String...) -> Any? {
        var node: Any? = self
        for key in path { node = (node as? [String: Any])?[key] }
        return node
    }
}

@Suite("Deploy/: manifests, images and settings files are valid")
struct DeployTests {
    /// The Kubernetes kinds that are CRDs (no schema in kubernetes-validate): checked structurally here.
    static let customKinds: Set<String> = ["KafkaTopic", "ScaledObject", "TriggerAuthentication"]

    @Test("every YAML file under Deploy/ parses, and the Grafana dashboard is JSON")
    func everyYAMLParses() throws {
        let yaml = files(["yaml", "yml"])
        #expect(yaml.count >= 15, "found \(yaml.map(\.lastPathComponent))")
        for url in yaml {
            let docs = try documents(url)
            #expect(!docs.isEmpty, "\(url.path) has no document")
            for doc in docs { #expect(doc is [String: Any], "\(url.path): a document that is not a mapping") }
        }
        for url in files(["json"]) {
            _ = try JSONSerialization.jsonObject(with: Data(contentsOf: url))
        }
    }

    /// The Kubernetes resources of Deploy/kubernetes, with their files.
    static func kubernetesResources() throws -> [(file: URL, resource: [String: Any])] {
        try files(["yaml"], under: deploy.appendingPathComponent("kubernetes")).flatMap { url in
            try documents(url).compactMap { ($0 as? [String: Any]).map { (url, $0) } }
        }
    }

    @Test("the Kubernetes manifests validate against the Kubernetes schemas (kubernetes-validate --strict)")
    func kubernetesSchemas() throws {
        try requireTool("kubernetes-validate")
        let resources = try Self.kubernetesResources()
        let builtIn = Set(resources.filter { !Self.customKinds.contains($0.resource["kind"] as? String ?? "") }.map(\.file.path)).sorted()
        #expect(builtIn.count >= 6)
        // 1.31: the oldest release with every field used (preStop sleep).
        let result = try tool("kubernetes-validate", ["--strict", "-k", "1.31.0"] + builtIn)
        #expect(result.status == 0, "\(result.output)")
        #expect(!result.output.contains("Couldn't find schema"), "a built-in kind went unchecked: \(result.output)")
        let passed = result.output.split(separator: "\n").filter { $0.contains(" passed for resource ") }.count
        let expected = resources.count { !Self.customKinds.contains($0.resource["kind"] as? String ?? "") }
        #expect(passed == expected, "\(result.output)")
        // A broken manifest is refused: the validator does check.
        let broken = FileManager.default.temporaryDirectory.appendingPathComponent("broken-\(UUID().uuidString).yaml")
        defer { try? FileManager.default.removeItem(at: broken) }
        try String(contentsOf: deploy.appendingPathComponent("kubernetes/deployment.yaml"), encoding: .utf8)
            .replacingOccurrences(of: "replicas: 3", with: "replicas: three").write(to: broken, atomically: true, encoding: .utf8)
        #expect(try tool("kubernetes-validate", ["--strict", "-k", "1.31.0", broken.path]).status != 0)
    }

    @Test("the CRDs (Strimzi KafkaTopic, KEDA) are well formed and agree with the deployment: every WIRE.md topic, replicas up to the partitions")
    func customResources() throws {
        let resources = try Self.kubernetesResources().map(\.resource)
        for resource in resources {
            let kind = resource["kind"] as? String ?? ""
            #expect(resource["apiVersion"] is String && !kind.isEmpty && resource.at("metadata", "name") is String, "\(resource)")
        }
        func only(_ kind: String) throws -> [String: Any] {
            let matches = resources.filter { $0["kind"] as? String == kind }
            try #require(matches.count == 1, "one \(kind)")
            return matches[0]
        }
        let topics = resources.filter { $0["kind"] as? String == "KafkaTopic" }
        for topic in topics {
            #expect(topic["apiVersion"] as? String == "kafka.strimzi.io/v1beta2")
            #expect(topic.at("metadata", "labels", "strimzi.io/cluster") is String, "the operator finds a topic by its cluster label")
            #expect((topic.at("spec", "partitions") as? Int ?? 0) > 0 && (topic.at("spec", "replicas") as? Int ?? 0) > 0, "\(topic)")
            let config = topic.at("spec", "config") as? [String: Any] ?? [:]
            #expect(config["retention.ms"] is Int || config["cleanup.policy"] as? String == "compact", "a retention for \(topic.at("spec", "topicName") ?? "?")")
        }
        let names = Set(topics.compactMap { $0.at("spec", "topicName") as? String })
        #expect(names == Set(PipelineTopics().all), "Strimzi topics \(names.sorted()), the pipeline's \(PipelineTopics().all)")
        let ingressPartitions = topics.filter { PipelineTopics().allIngress.contains($0.at("spec", "topicName") as? String ?? "") }
            .compactMap { $0.at("spec", "partitions") as? Int }.min() ?? 0

        let deployment = try only("Deployment")
        let replicas = try #require(deployment.at("spec", "replicas") as? Int)
        #expect(replicas <= ingressPartitions)
        let scaled = try only("ScaledObject")
        #expect(scaled.at("spec", "scaleTargetRef", "name") as? String == deployment.at("metadata", "name") as? String)
        #expect((scaled.at("spec", "maxReplicaCount") as? Int ?? .max) <= ingressPartitions)
        let trigger = try #require((scaled.at("spec", "triggers") as? [[String: Any]])?.first)
        #expect(trigger["type"] as? String == "kafka")
        let hpa = try only("HorizontalPodAutoscaler")
        #expect((hpa.at("spec", "maxReplicas") as? Int ?? .max) <= ingressPartitions)
        #expect(hpa.at("spec", "scaleTargetRef", "name") as? String == deployment.at("metadata", "name") as? String)

        // The group KEDA watches is the one the pods join.
        let configMap = try only("ConfigMap")
        let settings = try #require(try Yams.load(yaml: configMap.at("data", "telematics.yaml") as? String ?? "") as? [String: Any])
        #expect((trigger["metadata"] as? [String: Any])?["consumerGroup"] as? String == settings["group"] as? String)
    }

    @Test("the Dockerfile passes hadolint")
    func dockerfile() throws {
        try requireTool("hadolint")
        let result = try tool("hadolint", ["--config", deploy.appendingPathComponent(".hadolint.yaml").path, deploy.appendingPathComponent("Dockerfile").path])
        #expect(result.status == 0, "\(result.output)")
        // hadolint does look: a root image with an unpinned base fails.
        let bad = FileManager.default.temporaryDirectory.appendingPathComponent("Dockerfile-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: bad) }
        try "FROM debian\nRUN cd /tmp && apt-get install curl\n".write(to: bad, atomically: true, encoding: .utf8)
        #expect(try tool("hadolint", [bad.path]).status != 0)
    }

    @Test("the drain time agrees: Kubernetes grace period and compose stop_grace_period cover preStop and the pipeline's drain")
    func gracefulTermination() throws {
        let deployment = try #require(try Self.kubernetesResources().first { $0.resource["kind"] as? String == "Deployment" }?.resource)
        let pod = try #require(deployment.at("spec", "template", "spec") as? [String: Any])
        let grace = try #require(pod["terminationGracePeriodSeconds"] as? Int)
        let container = try #require((pod["containers"] as? [[String: Any]])?.first)
        let preStop = (container as [String: Any]).at("lifecycle", "preStop", "sleep", "seconds") as? Int ?? 0
        // The pipeline's drain: producer flush 10 s, a store retry round up to 5 s, the final commit.
        #expect(grace >= preStop + 30, "grace \(grace) s, preStop \(preStop) s")
        let compose = try #require(try documents(deploy.appendingPathComponent("compose.yaml")).first as? [String: Any])
        let services = try #require(compose["services"] as? [String: Any])
        for name in ["pipeline-1", "pipeline-2"] {
            let service = try #require(services[name] as? [String: Any], "compose has \(name)")
            #expect(service["stop_grace_period"] as? String == "\(grace)s", "\(name) stops as gracefully as a pod")
        }
    }

    @Test("compose: three KRaft brokers, PostgreSQL, two pipeline instances in one group, the simulator, Prometheus and Grafana")
    func compose() throws {
        let compose = try #require(try documents(deploy.appendingPathComponent("compose.yaml")).first as? [String: Any])
        let services = try #require(compose["services"] as? [String: Any])
        let kafka = services.filter { $0.key.hasPrefix("kafka-") }
        #expect(kafka.count == 3)
        for (_, service) in kafka {
            let s = try #require(service as? [String: Any])
            #expect((s["image"] as? String)?.hasPrefix("apache/kafka:") == true)
            let environment = s["environment"] as? [String: Any] ?? [:]
            #expect(environment["KAFKA_PROCESS_ROLES"] as? String == "broker,controller", "KRaft")
        }
        for name in ["postgres", "topics", "keys", "simulator", "prometheus", "grafana"] { #expect(services[name] != nil, "\(name)") }
        let topicsJob = "\(services["topics"] ?? "")"
        for topic in PipelineTopics().all { #expect(topicsJob.contains("topic \(topic) "), "the topics job creates \(topic)") }
        // Both pipelines read one settings file: one group.
        let settings = try #require(try documents(deploy.appendingPathComponent("config/compose-pipeline.yaml")).first as? [String: Any])
        #expect(settings["group"] as? String == "telematics")
        let prometheus = try String(contentsOf: deploy.appendingPathComponent("prometheus/prometheus.yml"), encoding: .utf8)
        #expect(prometheus.contains("pipeline-1:8080") && prometheus.contains("pipeline-2:8080"))
    }

    @Test("every metric the dashboard and the alert rules use is one the pipeline exports")
    func metricNames() throws {
        // The labels of swift-metrics instruments in the sources.
        let sources = deploy.deletingLastPathComponent().appendingPathComponent("Sources")
        let code = try files(["swift"], under: sources).map { try String(contentsOf: $0, encoding: .utf8) }.joined()
        let exported = Set(code.matches(of: /(?:Counter|Gauge|Timer|Recorder)\(label: "([a-z_]+)"/).map { String($0.output.1) })
        #expect(exported.contains("telematics_records_total") && exported.contains("telematics_consumer_partition_lag"))
        let dashboard = try String(contentsOf: deploy.appendingPathComponent("grafana/dashboards/telematics.json"), encoding: .utf8)
        let rules = try String(contentsOf: deploy.appendingPathComponent("prometheus/alerts.yml"), encoding: .utf8)
        let used = Set((dashboard + rules).matches(of: /\b((?:telematics|callcentre)_[a-z_]+)/).map { name in
            String(name.output.1).replacing(/_(bucket|sum|count)$/, with: "")
        })
        #expect(used.count >= 8)
        #expect(used.subtracting(exported).isEmpty, "not exported: \(used.subtracting(exported).sorted())")
        // What the dashboard must show (issue #8).
        for needed in ["telematics_records_total", "telematics_consumer_partition_lag", "telematics_rejected_total",
                       "telematics_alert_latency_seconds", "telematics_store_batch_seconds"] {
            #expect(dashboard.contains(needed), "the dashboard shows \(needed)")
        }
        for needed in ["telematics_consumer_lag", "telematics_rejected_total", "callcentre_alerts_escalated_total"] {
            #expect(rules.contains(needed), "an alert rule on \(needed)")
        }
    }
}

@Suite("telematics config check on the files of Deploy/", .enabled(if: TelematicsBinary.url != nil, "the telematics binary is not built"))
struct DeployConfigTests {
    @Test("every example settings file, and the Kubernetes ConfigMap's, passes `telematics config check`")
    func examplesPass() throws {
        var paths = files(["yaml"], under: deploy.appendingPathComponent("config")).map(\.path)
        let configMap = try documents(deploy.appendingPathComponent("kubernetes/configmap.yaml")).first as? [String: Any]
        let embedded = try #require(configMap?.at("data", "telematics.yaml") as? String)
        let extracted = FileManager.default.temporaryDirectory.appendingPathComponent("configmap-\(UUID().uuidString).yaml")
        try embedded.write(to: extracted, atomically: true, encoding: .utf8)
        defer { try? FileManager.default.removeItem(at: extracted) }
        paths.append(extracted.path)
        #expect(paths.count >= 4)
        for path in paths {
            let output = try TelematicsBinary.run(["config", "check", path])
            #expect(output.status == 0, "\(path): \(output.stderr)")
            #expect(try Yams.load(yaml: output.stdout) is [String: Any], "the effective configuration is YAML: \(output.stdout)")
        }
    }
}
