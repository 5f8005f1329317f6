@testable import TelematicsPipeline
import TelematicsKafka
import Testing

@Suite("Durable offsets across revokes")
struct DurableOffsetsTests {
    @Test("a batch polled before a revoke of its partition neither records nor commits that partition's offset; other partitions and later batches do")
    func staleBatchAfterRevoke() {
        let durable = DurableOffsets()
        let p = KafkaTopicPartition(topic: "t", partition: 0)
        let q = KafkaTopicPartition(topic: "t", partition: 1)
        func offset(_ partition: KafkaTopicPartition, _ offset: Int64) -> KafkaProcessedOffset {
            KafkaProcessedOffset(topic: partition.topic, partition: partition.partition, offset: offset)
        }
        #expect(durable.record([offset(p, 10)], ticket: durable.ticket) == [offset(p, 10)])
        let stale = durable.ticket
        // The revoke commits p's durable offset and takes it away.
        #expect(durable.take([p]) == [offset(p, 10)])
        // A batch polled before the revoke becomes durable after it: p's offset
        // is dropped (the next owner may be further), q's kept.
        #expect(durable.record([offset(p, 12), offset(q, 3)], ticket: stale) == [offset(q, 3)])
        #expect(durable.all == [offset(q, 3)])
        // p assigned again: batches polled from now on count.
        #expect(durable.record([offset(p, 40)], ticket: durable.ticket) == [offset(p, 40)])
        #expect(Set(durable.all.map(\.offset)) == [3, 40])
    }
}
