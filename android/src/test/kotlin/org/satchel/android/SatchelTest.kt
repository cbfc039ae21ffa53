// End-to-end tests of the mobile API on the JVM: the real libsatchel_core
// (host build, loaded by JNA), a real satchel-sync relay on loopback, and
// the generated Kotlin bindings plus the coroutine wrappers. Run with
// scripts/test-mobile.sh (see DEVELOPERS.md).
package org.satchel.android

import java.io.BufferedReader
import java.io.File
import java.io.InputStreamReader
import java.nio.file.Files
import java.util.concurrent.ConcurrentHashMap
import java.util.concurrent.LinkedBlockingQueue
import java.util.concurrent.TimeUnit
import kotlinx.coroutines.async
import kotlinx.coroutines.awaitAll
import kotlinx.coroutines.flow.first
import kotlinx.coroutines.flow.filter
import kotlinx.coroutines.flow.filterIsInstance
import kotlinx.coroutines.runBlocking
import kotlinx.coroutines.withTimeout
import org.junit.AfterClass
import org.junit.Assert.assertEquals
import org.junit.Assert.assertFalse
import org.junit.Assert.assertNotNull
import org.junit.Assert.assertNull
import org.junit.Assert.assertTrue
import org.junit.Assert.fail
import org.junit.BeforeClass
import org.junit.Test
import org.satchel.core.WearableSample
import org.satchel.core.EmergencyCardParts
import org.satchel.core.ShareLinkRequest
import org.satchel.core.AccessRole
import org.satchel.core.ByteStream
import org.satchel.core.HealthRecord
import org.satchel.core.ChangeEvent
import org.satchel.core.EntryQuery
import org.satchel.core.IdentityKind
import org.satchel.core.InviteTerms
import org.satchel.core.SatchelException
import org.satchel.core.SatchelHome
import org.satchel.core.SecretStore

/** A test keystore: a map in memory (what the Android Keystore is to an app). */
class MapSecretStore : SecretStore {
    val items = ConcurrentHashMap<String, ByteArray>()
    override fun get(name: String): ByteArray? = items[name]?.copyOf()
    override fun put(name: String, secret: ByteArray) {
        items[name] = secret.copyOf()
    }
    override fun delete(name: String) {
        items.remove(name)
    }
}

/**
 * One end of an in-memory duplex pipe implementing the library's
 * ByteStream (what a Bluetooth L2CAP or Multipeer stream is to an app):
 * reads block up to 10 s, an empty read means the other end closed.
 */
class QueuePipe(
    private val incoming: LinkedBlockingQueue<ByteArray>,
    private val outgoing: LinkedBlockingQueue<ByteArray>,
) : ByteStream {
    private var pending = ByteArray(0)

    override fun read(max: UInt): ByteArray {
        if (pending.isEmpty()) {
            pending = incoming.poll(10, TimeUnit.SECONDS)
                ?: throw SatchelException.Offline("the pipe timed out")
            if (pending.isEmpty()) return ByteArray(0) // closed
        }
        val n = minOf(pending.size, max.toInt())
        val out = pending.copyOf(n)
        pending = pending.copyOfRange(n, pending.size)
        return out
    }

    override fun write(bytes: ByteArray) {
        if (bytes.isNotEmpty()) outgoing.put(bytes.copyOf())
    }

    /** Close this end: the other end reads end-of-stream. */
    fun close() = outgoing.put(ByteArray(0))

    companion object {
        fun pair(): Pair<QueuePipe, QueuePipe> {
            val ab = LinkedBlockingQueue<ByteArray>()
            val ba = LinkedBlockingQueue<ByteArray>()
            return QueuePipe(ba, ab) to QueuePipe(ab, ba)
        }
    }
}

fun med(text: String) =
    """{"resourceType":"MedicationStatement","status":"active","medicationCodeableConcept":{"text":"$text"},"subject":{"reference":"Patient/p"}}"""

fun allergy(text: String) =
    """{"resourceType":"AllergyIntolerance","code":{"text":"$text"},"recordedDate":"2021-03-04"}"""

class SatchelTest {
    companion object {
        private lateinit var relay: Process
        lateinit var relayUrl: String
        private val root: File = Files.createTempDirectory("satchel-kotlin").toFile()

        @BeforeClass
        @JvmStatic
        fun startRelay() {
            val bin = System.getProperty("satchel.sync.bin") ?: error("set -Dsatchel.sync.bin")
            val dir = File(root, "relay").apply { mkdirs() }
            relay = ProcessBuilder(bin, "--listen", "127.0.0.1:0", "--db", File(dir, "relay.db").path)
                .redirectError(ProcessBuilder.Redirect.DISCARD)
                .start()
            val first = BufferedReader(InputStreamReader(relay.inputStream)).readLine()
                ?: error("satchel-sync printed nothing")
            val addr = first.removePrefix("listening on ").trim()
            relayUrl = "http://$addr"
            // Keep draining the relay's stdout so it never blocks.
            Thread { relay.inputStream.readAllBytes() }.apply { isDaemon = true }.start()
        }

        @AfterClass
        @JvmStatic
        fun stopRelay() {
            relay.destroy()
            relay.waitFor(10, TimeUnit.SECONDS)
            root.deleteRecursively()
        }
    }

    private fun home(name: String, keystore: SecretStore = MapSecretStore()) =
        SatchelHome(File(root, name).path, keystore)

    @Test
    fun profileWithTestSecretStoreAddsListsAmendsAndReopens() = runBlocking {
        val keystore = MapSecretStore()
        val dir = File(root, "own").path
        val record = openHome(dir, keystore).createRecordAsync("Alex")
        assertEquals(1, keystore.items.size)
        assertTrue(keystore.items.keys.first().startsWith("satchel.vault-key."))
        val added = record.addAsync("[${med("metformin 500 mg")}, ${allergy("penicillin")}]")
        assertEquals(listOf("medications", "allergies"), added.map { it.section })
        assertEquals(2, record.listAsync().size)
        val meds = record.listAsync(EntryQuery(section = "medications"))
        assertEquals(1, meds.size)
        assertTrue(meds[0].current.resourceJson.contains("metformin 500 mg"))

        val id = meds[0].id
        record.amendAsync(id, med("metformin 1000 mg"))
        val history = record.historyAsync(id)
        assertEquals(2, history.size)
        assertTrue(history.last().resourceJson.contains("1000 mg"))
        record.markEnteredInErrorAsync(id)
        assertEquals(1, record.listAsync().size)
        assertTrue(record.listAsync(EntryQuery(includeEnteredInError = true)).any { it.id == id && it.enteredInError })
        record.close()

        // Reopen from disk with the same keystore: everything is there.
        val again = SatchelHome(dir, keystore).openRecord()
        assertEquals("Alex", again.ownerName())
        assertEquals(1, again.listAsync(EntryQuery(text = "penicillin")).size)
        assertEquals(3, again.history(id).size)
        again.close()
    }

    @Test
    fun badInputIsRefusedAsTypedExceptionAndChangesNothing() = runBlocking {
        val record = home("bad").createRecord("Bo")
        try {
            record.add("[${med("ok")}, {\"resourceType\":\"Spaceship\"}]", null)
            fail("an invalid resource must be refused")
        } catch (e: SatchelException.InvalidInput) {
            assertTrue(e.reason.contains("resource 1"))
        }
        assertEquals(0, record.list(EntryQuery()).size)
        record.close()
    }

    @Test
    fun wrongKeySurfacesAsTypedKotlinException() {
        val keystore = MapSecretStore()
        val dir = File(root, "wrong").path
        SatchelHome(dir, keystore).createRecord("Cy").close()
        // Another key under the same name: the vault does not open.
        val name = keystore.items.keys.first()
        val wrong = MapSecretStore().apply { items[name] = ByteArray(32) { 7 } }
        try {
            SatchelHome(dir, wrong).openRecord()
            fail("a wrong key must not open the vault")
        } catch (e: SatchelException.WrongKey) {
            // the typed exception
        }
        // No key at all: the keystore error, typed too.
        try {
            SatchelHome(dir, MapSecretStore()).openRecord()
            fail("a missing key must not open the vault")
        } catch (e: SatchelException.Keystore) {
        }
        // A keystore that throws: the app's exception comes back typed.
        val failing = object : SecretStore {
            override fun get(name: String): ByteArray? = throw SatchelException.Keystore("locked")
            override fun put(name: String, secret: ByteArray) = throw SatchelException.Keystore("locked")
            override fun delete(name: String) {}
        }
        try {
            SatchelHome(dir, failing).openRecord()
            fail("a failing keystore must not open the vault")
        } catch (e: SatchelException.Keystore) {
            assertTrue(e.reason.contains("locked"))
        }
        // The right key still opens it.
        SatchelHome(dir, keystore).openRecord().close()
    }

    @Test
    fun twoProfilesSyncThroughRelayAndConverge() = runBlocking {
        val a = home("phone-a").createRecord("Dana")
        a.addAsync(med("lisinopril"))
        val first = a.sync(relayUrl) // a suspend function
        assertEquals(1u, first.uploaded)
        val recoveryKey = a.createRecoveryKey(relayUrl)

        // A second device of the same record, restored with the recovery key.
        val b = home("phone-b").restore(relayUrl, recoveryKey)
        assertEquals(a.recordId(), b.recordId())
        assertEquals(listOf("lisinopril"), b.listAsync().map { it.current.displays.first() })

        // Device A listens; device B writes; A hears and converges.
        val changes = a.changes(relayUrl)
        val heard = async {
            withTimeout(30_000) {
                changes.filterIsInstance<ChangeEvent.SectionChanged>()
                    .filter { it.section == "allergies" }
                    .first()
            }
        }
        // Meanwhile both sides run suspend calls concurrently.
        b.addAsync(allergy("latex"))
        listOf(async { b.sync(relayUrl) }, async { b.sync(relayUrl) }).awaitAll()
        assertEquals("allergies", heard.await().section)

        a.sync(relayUrl)
        b.sync(relayUrl)
        val listA = a.listAsync().map { it.id }.sorted()
        val listB = b.listAsync().map { it.id }.sorted()
        assertEquals(2, listA.size)
        assertEquals(listA, listB)
        assertTrue(a.grants().any { it.identity == b.deviceId() && it.role == null })
        a.close()
        b.close()
    }

    @Test
    fun tabletLinkedWithOneTimeCodeAndConflictsAreFlagged() = runBlocking {
        val phone = home("link-phone").createRecord("Fay")
        phone.addAsync(med("metformin 500 mg"))
        val code = phone.offerDeviceLink(relayUrl)
        assertTrue(code.startsWith("satchel-link:"))
        // The phone waits for the tablet while staying usable.
        val admitted = async { phone.completeDeviceLink(relayUrl, code, 30_000uL) }
        assertEquals(1, phone.listAsync().size)
        val tablet = home("link-tablet").joinDevice(code, 30_000uL)
        val card = admitted.await()
        assertEquals(tablet.device().fingerprint, card.fingerprint)
        assertTrue(tablet.isOwnerDevice())
        assertEquals(phone.recordId(), tablet.recordId())
        assertEquals(phone.listAsync().map { it.id }, tablet.listAsync().map { it.id })
        // A code is single use.
        try {
            home("link-other").joinDevice(code, 2_000uL)
            fail("a used link code must not admit another device")
        } catch (e: SatchelException) {
        }

        // Both devices change the dose offline: flagged as a conflict on both.
        val id = phone.listAsync().single().id
        phone.amend(id, med("metformin 1 g"))
        tablet.amend(id, med("metformin 750 mg"))
        phone.sync(relayUrl)
        tablet.sync(relayUrl)
        phone.sync(relayUrl)
        for (device in listOf(phone, tablet)) {
            val entry = device.listAsync().single()
            assertTrue(entry.conflict)
            assertEquals(listOf(false, true, true), device.history(id).map { it.concurrent })
        }
        // Settled by amending the current version.
        phone.amend(id, med("metformin 1 g"))
        phone.sync(relayUrl)
        tablet.sync(relayUrl)
        assertFalse(tablet.listAsync().single().conflict)
        phone.close()
        tablet.close()
    }

    /** The manifest URL inside a `shlink:/` payload. */
    private fun manifestUrl(shlink: String): String {
        val json = String(java.util.Base64.getUrlDecoder().decode(shlink.removePrefix("shlink:/")))
        return Regex("\"url\":\"([^\"]+)\"").find(json)!!.groupValues[1]
    }

    private fun http(method: String, url: String, body: String?): Int {
        val builder = java.net.http.HttpRequest.newBuilder(java.net.URI.create(url))
        if (body != null) {
            builder.header("content-type", "application/json")
                .method(method, java.net.http.HttpRequest.BodyPublishers.ofString(body))
        } else {
            builder.method(method, java.net.http.HttpRequest.BodyPublishers.noBody())
        }
        return java.net.http.HttpClient.newHttpClient()
            .send(builder.build(), java.net.http.HttpResponse.BodyHandlers.discarding())
            .statusCode()
    }

    @Test
    fun shareLinksAndTheEmergencyCardAcrossTheFfi() = runBlocking {
        val owner = home("links").createRecord("Gus")
        owner.addAsync(
            """[{"resourceType":"Patient","id":"p","name":[{"family":"Gus","given":["Ann"]}],"birthDate":"1950-01-02"},
               ${allergy("latex")}, ${med("warfarin")}]""",
        )
        owner.sync(relayUrl)

        val link = owner.createShareLink(
            relayUrl,
            ShareLinkRequest(
                sections = null,
                expiresAtMs = System.currentTimeMillis() + 3_600_000,
                passcode = "1234-9876",
                label = "For the clinic",
                live = false,
                once = false,
            ),
        )
        assertTrue(link.shlink.startsWith("shlink:/"))
        assertTrue(link.viewerUrl.startsWith("$relayUrl/view#shlink:/"))
        assertEquals("IPS", link.shows)
        assertTrue(link.passcode)
        assertEquals(listOf(link.id), owner.shareLinks().map { it.id })
        val url = manifestUrl(link.shlink)
        assertEquals(401, http("POST", url, """{"recipient":"Dr K","passcode":"wrong"}"""))
        assertEquals(200, http("POST", url, """{"recipient":"Dr K","passcode":"1234-9876"}"""))
        val opens = owner.shareLinkOpens(relayUrl)
        assertTrue(opens.any { it.who == "share link For the clinic (Dr K)" && it.action == "viewed" })
        assertTrue(opens.any { it.action == "wrong passcode" })
        owner.revokeShareLink(link.id)
        assertEquals(404, http("POST", url, """{"recipient":"Dr K","passcode":"1234-9876"}"""))
        assertNotNull(owner.shareLinks().single().revokedAtMs)

        // The emergency card: a passcode-free U link, one at a time.
        assertNull(owner.emergencyCard())
        val parts = EmergencyCardParts(
            allergies = true, medications = true, conditions = true, bloodGroup = true, contact = false,
        )
        val card = owner.issueEmergencyCard(relayUrl, parts)
        assertTrue(card.emergencyCard)
        assertFalse(card.passcode)
        val cardUrl = manifestUrl(card.shlink)
        assertEquals(200, http("GET", "$cardUrl?recipient=Paramedic", null))
        val again = owner.issueEmergencyCard(relayUrl, parts)
        assertEquals(again.id, owner.emergencyCard()!!.id)
        assertEquals(404, http("GET", "$cardUrl?recipient=Paramedic", null))
        assertTrue(owner.revokeEmergencyCard(relayUrl))
        assertNull(owner.emergencyCard())

        // Every link still served, at once (after losing a phone).
        val a = owner.createShareLink(relayUrl, ShareLinkRequest(null, null, null, "A", false, false))
        val b = owner.issueEmergencyCard(relayUrl, parts)
        assertEquals(setOf(a.id, b.id), owner.revokeAllShareLinks(relayUrl).toSet())
        assertEquals(404, http("POST", manifestUrl(a.shlink), """{"recipient":"x"}"""))
        assertEquals(emptyList<String>(), owner.revokeAllShareLinks(relayUrl))
        owner.close()
    }

    @Test
    fun carerInvitedAcceptedApprovedSeesOnlyGrantedSectionUntilRevoked() = runBlocking {
        val owner = home("patient").createRecord("Eli")
        owner.addAsync("[${med("warfarin")}, ${allergy("peanuts")}]")
        owner.sync(relayUrl)

        val invite = owner.invite(
            relayUrl,
            InviteTerms(role = AccessRole.READER, sections = listOf("medications"), label = "daughter"),
            3600uL,
        )
        assertTrue(invite.code.startsWith("satchel-invite:"))
        assertNull(owner.invitee(relayUrl, invite.inviteId))

        val carerHome = home("carer")
        assertEquals(emptyList<String>(), carerHome.pendingInvites())
        val me = carerHome.acceptInvite(invite.code, "Jane", IdentityKind.CARER)
        assertEquals(listOf(invite.code), carerHome.pendingInvites())
        val answered = owner.invitee(relayUrl, invite.inviteId)
        assertNotNull(answered)
        assertEquals(me.fingerprint, answered!!.fingerprint)
        owner.approve(relayUrl, invite.inviteId, answered.identity)

        val shared = carerHome.awaitApproval(invite.code, 30_000uL)
        assertEquals(emptyList<String>(), carerHome.pendingInvites())
        assertEquals(listOf(shared.recordId()), carerHome.sharedRecords())
        assertEquals(listOf("medications"), shared.readableSections())
        val seen = shared.listAsync()
        assertEquals(listOf("medications"), seen.map { it.section })
        assertEquals("warfarin", seen.single().current.displays.first())
        assertFalse(shared.mayAdminister())
        val grant = owner.grants().single { it.identity == me.identity }
        assertEquals(AccessRole.READER, grant.role)
        assertEquals(listOf("medications"), grant.sections)

        // A reader cannot write, and the owner's audit shows its pulls.
        try {
            shared.add(med("aspirin"), null)
            fail("a reader must not write")
        } catch (e: SatchelException.NotAllowed) {
        }
        assertTrue(owner.audit(relayUrl).any { it.identity == me.identity && it.action == "pull" })

        // Revoke: the carer gets nothing new and the relay refuses it.
        owner.revoke(relayUrl, me.identity, null)
        assertTrue(owner.grants().none { it.identity == me.identity })
        owner.addAsync(med("new medicine"))
        owner.sync(relayUrl)
        try {
            shared.sync(relayUrl)
            fail("a revoked carer must not sync")
        } catch (e: SatchelException.NotAllowed) {
        }
        // Background sync stops with the typed exception, after telling the
        // app its access was revoked.
        val events = mutableListOf<ChangeEvent>()
        try {
            withTimeout(30_000) { shared.changes(relayUrl).collect { events.add(it) } }
            fail("the subscription must end")
        } catch (e: SatchelException.NotAllowed) {
        }
        assertTrue(events.any { it is ChangeEvent.AccessRevoked && it.identity == me.identity })
        assertEquals(listOf("warfarin"), shared.listAsync().map { it.current.displays.first() })
        shared.close()
        owner.close()
    }

    @Test
    fun fhirImportExportAndWearablesAcrossTheFfi() {
        val record = home("fhir").createRecord("Dee")
        val bundle = """{"resourceType":"Bundle","type":"collection","entry":[
            {"fullUrl":"urn:uuid:6a0e8a2e-8d4e-4f7b-9b7e-1d2c3b4a5f60","resource":{"resourceType":"Patient","id":"p",
              "identifier":[{"system":"urn:test","value":"1"}],"name":[{"family":"Dee","given":["Di"]}],"birthDate":"1980-01-01"}},
            {"resource":{"resourceType":"MedicationStatement","id":"m1","status":"active",
              "medicationCodeableConcept":{"text":"metformin"},"subject":{"reference":"urn:uuid:6a0e8a2e-8d4e-4f7b-9b7e-1d2c3b4a5f60"}}}]}"""
        assertEquals(2u, record.importFhir(bundle, "GP").added)
        assertEquals(2u, record.importFhir(bundle, "GP").unchanged)
        try {
            record.importFhir(bundle.replace("\"value\":\"1\"", "\"value\":\"2\""), "GP")
            fail("another patient's Bundle must be refused")
        } catch (e: SatchelException.InvalidInput) {
            assertTrue(e.reason.contains("does not match"))
        }
        assertTrue(record.exportIps().contains("\"type\":\"document\""))
        val samples = (0 until 48).map {
            WearableSample("heart-rate", it * 3_600_000L, it * 3_600_000L, 60.0 + it, "/min", "watch")
        }
        assertEquals(48uL, record.ingestWearables(samples).stored)
        assertEquals(0uL, record.ingestWearables(samples).stored)
        val days = record.wearableSummary("heart-rate", 0L, 2 * 86_400_000L, "day")
        assertEquals(2, days.size)
        assertEquals(24uL, days[0].count)
        record.close()
    }

    /** A record on a phone and a tablet linked to it with a one-time code (through the relay). */
    private suspend fun linkedDevices(name: String): Pair<HealthRecord, HealthRecord> = kotlinx.coroutines.coroutineScope {
        val phone = home("$name-phone").createRecord("Gus")
        phone.addAsync(med("metformin 500 mg"))
        val code = phone.offerDeviceLink(relayUrl)
        val admitted = async { phone.completeDeviceLink(relayUrl, code, 30_000uL) }
        val tablet = home("$name-tablet").joinDevice(code, 30_000uL)
        admitted.await()
        phone to tablet
    }

    private suspend fun ids(record: HealthRecord) = record.listAsync().map { it.id }.sorted()

    @Test
    fun nearbyListenAndSyncWithPairingCodeOnLoopback() = runBlocking {
        val (phone, tablet) = linkedDevices("nearby")
        // Both change the record offline; then they sync directly, no relay.
        phone.addAsync(allergy("latex"))
        tablet.addAsync(med("lisinopril"))

        val listener = phone.startNearbyListen("127.0.0.1", false)
        val code = listener.code()
        assertTrue(code, code.startsWith("satchel-nearby:127.0.0.1:${listener.port()}/"))
        val served = async { listener.serve(30_000uL) }
        // The phone stays usable while it waits.
        assertEquals(2, phone.listAsync().size)
        val scanned = tablet.nearbySync(code)
        val shown = served.await()
        assertEquals(phone.device().fingerprint, scanned.peerFingerprint)
        assertEquals(phone.deviceId(), scanned.peerIdentity)
        assertEquals(tablet.device().fingerprint, shown.peerFingerprint)
        assertFalse(scanned.inSync)
        assertEquals(1uL, scanned.stored)
        assertEquals(1uL, scanned.sent)
        assertEquals(scanned.sent, shown.stored)
        assertTrue(scanned.bytesSent > 0uL && scanned.bytesReceived > 0uL)
        assertEquals(3, ids(phone).size)
        assertEquals(ids(phone), ids(tablet))
        listener.close()

        // The listener is gone: its code syncs no more.
        try {
            tablet.nearbySync(code)
            fail("a closed listener's code must not sync")
        } catch (e: SatchelException.Offline) {
        }
        // A code with a wrong token is refused by the listening device.
        val again = phone.startNearbyListenAsync("127.0.0.1")
        val waiting = async {
            try {
                again.serve(3_000uL)
                null
            } catch (e: SatchelException) {
                e
            }
        }
        val forged = again.code().dropLast(1) + if (again.code().endsWith("0")) "1" else "0"
        try {
            tablet.nearbySync(forged)
            fail("a wrong pairing code must be refused")
        } catch (e: SatchelException.NotAllowed) {
            assertTrue(e.reason, e.reason.contains("pairing code"))
        }
        assertTrue(waiting.await() is SatchelException.NotAllowed)
        again.close()
        try {
            tablet.nearbySync("satchel-link:not-a-pairing-code")
            fail("not a pairing code")
        } catch (e: SatchelException.InvalidInput) {
        }
        phone.close()
        tablet.close()
    }

    @Test
    fun byteStreamImplementedInKotlinSyncsTwoDevices() = runBlocking {
        val (phone, tablet) = linkedDevices("stream")
        phone.addAsync(allergy("peanuts"))
        tablet.addAsync("[${med("aspirin")}, ${med("atorvastatin")}]")

        // The app's transport: the tablet connected (initiator), the phone accepted.
        val (tabletEnd, phoneEnd) = QueuePipe.pair()
        val responder = async { phone.syncOverStream(phoneEnd, false).also { phoneEnd.close() } }
        val initiated = tablet.syncOverStream(tabletEnd, true)
        tabletEnd.close()
        val responded = responder.await()
        assertEquals(phone.device().fingerprint, initiated.peerFingerprint)
        assertEquals(tablet.device().fingerprint, responded.peerFingerprint)
        assertEquals(initiated.sent, responded.stored)
        assertEquals(responded.sent, initiated.stored)
        assertEquals(4, ids(phone).size)
        assertEquals(ids(phone), ids(tablet))

        // In sync: one summary round trip, nothing exchanged.
        val (a, b) = QueuePipe.pair()
        val other = async { tablet.syncOverStream(b, false).also { b.close() } }
        assertTrue(phone.syncOverStream(a, true).inSync)
        a.close()
        assertTrue(other.await().inSync)

        // Another record's device is refused on both ends.
        val stranger = home("stream-stranger").createRecord("Zed")
        val (s, p) = QueuePipe.pair()
        val refusing = async {
            try {
                phone.syncOverStream(p, false)
                null
            } catch (e: SatchelException) {
                e
            } finally {
                p.close()
            }
        }
        try {
            stranger.syncOverStream(s, true)
            fail("a stranger must be refused")
        } catch (e: SatchelException.NotAllowed) {
        } finally {
            s.close()
        }
        assertTrue(refusing.await() is SatchelException.NotAllowed)
        assertEquals(0, stranger.listAsync().size)
        stranger.close()
        phone.close()
        tablet.close()
    }
}
