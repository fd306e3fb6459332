import Testing

@testable import SquallCore

@Suite("Broker: acks folded into multiple acks")
struct UnsettledDeliveriesTests {
    typealias Frame = UnsettledDeliveries.AckFrame

    static func delivered(_ count: UInt64) -> UnsettledDeliveries {
        var unsettled = UnsettledDeliveries()
        for tag in 1...count { unsettled.delivered(tag) }
        return unsettled
    }

    @Test("acks of the oldest open deliveries go as one multiple ack; a single one as itself")
    func runFromTheOldest() {
        var unsettled = Self.delivered(5)
        #expect(unsettled.ackFrames(for: [3, 1, 2]) == [Frame(tag: 3, multiple: true)])
        #expect(unsettled.oldestOpen == 4)
        #expect(unsettled.openCount == 2)
        #expect(unsettled.ackFrames(for: [4]) == [Frame(tag: 4, multiple: false)])
        #expect(unsettled.ackFrames(for: []) == [])
    }

    @Test("an ack behind a delivery still open goes alone, and a later run steps over it")
    func outOfOrder() {
        var unsettled = Self.delivered(6)
        #expect(unsettled.ackFrames(for: [5, 2]) == [Frame(tag: 2, multiple: false), Frame(tag: 5, multiple: false)])
        #expect(unsettled.oldestOpen == 1)
        #expect(unsettled.openCount == 4)
        // 1, (2 settled), 3: one frame up to 3; 4 is still open, so 5 stays settled on its own.
        #expect(unsettled.ackFrames(for: [1, 3]) == [Frame(tag: 3, multiple: true)])
        #expect(unsettled.oldestOpen == 4)
        #expect(unsettled.ackFrames(for: [4]) == [Frame(tag: 4, multiple: false)])
        #expect(unsettled.oldestOpen == 6)
        #expect(unsettled.openCount == 1)
    }

    @Test("a run never ends on a tag settled before: the broker would refuse it and close the channel")
    func runEndsOnAnAskedTag() {
        var unsettled = Self.delivered(3)
        #expect(unsettled.ackFrames(for: [2]) == [Frame(tag: 2, multiple: false)])
        #expect(unsettled.ackFrames(for: [1]) == [Frame(tag: 1, multiple: false)])
        #expect(unsettled.oldestOpen == 3)
    }

    @Test("a nack or reject stays out of every multiple ack, and a caller's multiple ack settles all below it")
    func directSettlements() {
        var unsettled = Self.delivered(8)
        unsettled.settledDirectly(2, multiple: false)  // rejected: dead-lettered, must not be acked
        #expect(unsettled.ackFrames(for: [1, 3]) == [Frame(tag: 3, multiple: true)])
        unsettled.settledDirectly(6, multiple: true)
        #expect(unsettled.oldestOpen == 7)
        unsettled.settledDirectly(7, multiple: false)
        #expect(unsettled.oldestOpen == 8)
        unsettled.settledDirectly(3, multiple: true)  // below what is open: changes nothing
        #expect(unsettled.oldestOpen == 8)
        #expect(unsettled.openCount == 1)
    }

    @Test("a tag asked twice in a pass is sent once; one never delivered is sent as asked, and not tracked")
    func oddRequests() {
        var unsettled = Self.delivered(2)
        #expect(unsettled.ackFrames(for: [1, 1]) == [Frame(tag: 1, multiple: false)])
        #expect(unsettled.ackFrames(for: [9]) == [Frame(tag: 9, multiple: false)])
        #expect(unsettled.oldestOpen == 2)
        #expect(unsettled.openCount == 1)
        #expect(unsettled.ackFrames(for: [2]) == [Frame(tag: 2, multiple: false)])
        #expect(unsettled.openCount == 0)
    }

    @Test("in any order of acks, every frame's run holds only asked tags, and all are settled in the end")
    func randomOrders() {
        var generator = SystemRandomNumberGenerator()
        for _ in 0..<200 {
            let count = UInt64.random(in: 1...40, using: &generator)
            var unsettled = Self.delivered(count)
            var order = Array(1...count)
            order.shuffle(using: &generator)
            var settled = Set<UInt64>()
            while !order.isEmpty {
                let pass = order.prefix(Int.random(in: 1...5, using: &generator))
                order.removeFirst(pass.count)
                for frame in unsettled.ackFrames(for: pass) {
                    #expect(!settled.contains(frame.tag), "tag \(frame.tag) acked twice")
                    if frame.multiple {
                        // What the broker settles: every tag up to the frame's not settled yet.
                        let covered = (1...frame.tag).filter { !settled.contains($0) }
                        #expect(covered.allSatisfy { pass.contains($0) }, "covered \(covered), asked \(Array(pass))")
                        settled.formUnion(covered)
                    } else {
                        settled.insert(frame.tag)
                    }
                }
            }
            #expect(settled == Set(1...count))
            #expect(unsettled.openCount == 0)
        }
    }
}
