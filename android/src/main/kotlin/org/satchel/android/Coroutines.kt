// Coroutine-friendly wrappers over the generated bindings (org.satchel.core).
// The generated async calls (sync, invite, approve, ...) are already suspend
// functions; the blocking record calls (list, add, amend, ...) get suspend
// twins here that run on Dispatchers.IO, and a subscription becomes a Flow.
// Pure Kotlin/JVM: compiled and tested on the JVM by scripts/test-mobile.sh.
package org.satchel.android

import kotlinx.coroutines.CoroutineDispatcher
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.channels.awaitClose
import kotlinx.coroutines.flow.Flow
import kotlinx.coroutines.flow.callbackFlow
import kotlinx.coroutines.withContext
import org.satchel.core.AddedEntry
import org.satchel.core.ChangeEvent
import org.satchel.core.ChangeListener
import org.satchel.core.EntryInfo
import org.satchel.core.EntryQuery
import org.satchel.core.HealthRecord
import org.satchel.core.NearbyListener
import org.satchel.core.SatchelException
import org.satchel.core.SatchelHome
import org.satchel.core.SecretStore
import org.satchel.core.SectionCount
import org.satchel.core.VersionInfo

/** Where blocking library calls run (tests may swap it). */
var satchelDispatcher: CoroutineDispatcher = Dispatchers.IO

/** Open (or create) the home in [dir] off the calling thread. */
suspend fun openHome(dir: String, keystore: SecretStore): SatchelHome =
    withContext(satchelDispatcher) { SatchelHome(dir, keystore) }

suspend fun SatchelHome.createRecordAsync(ownerName: String): HealthRecord =
    withContext(satchelDispatcher) { createRecord(ownerName) }

suspend fun SatchelHome.openRecordAsync(): HealthRecord =
    withContext(satchelDispatcher) { openRecord() }

suspend fun SatchelHome.openSharedAsync(recordId: String): HealthRecord =
    withContext(satchelDispatcher) { openShared(recordId) }

suspend fun HealthRecord.listAsync(query: EntryQuery = EntryQuery()): List<EntryInfo> =
    withContext(satchelDispatcher) { list(query) }

suspend fun HealthRecord.addAsync(resourcesJson: String, sourceSystem: String? = null): List<AddedEntry> =
    withContext(satchelDispatcher) { add(resourcesJson, sourceSystem) }

suspend fun HealthRecord.amendAsync(id: String, resourceJson: String) =
    withContext(satchelDispatcher) { amend(id, resourceJson) }

suspend fun HealthRecord.markEnteredInErrorAsync(id: String) =
    withContext(satchelDispatcher) { markEnteredInError(id) }

suspend fun HealthRecord.historyAsync(id: String): List<VersionInfo> =
    withContext(satchelDispatcher) { history(id) }

/**
 * Bind a direct-sync listener (and with [advertise], start its mDNS advert)
 * off the calling thread; show its code(), then await serve(timeoutMs).
 */
suspend fun HealthRecord.startNearbyListenAsync(bindAddress: String? = null, advertise: Boolean = false): NearbyListener =
    withContext(satchelDispatcher) { startNearbyListen(bindAddress, advertise) }

suspend fun HealthRecord.summaryAsync(): List<SectionCount> =
    withContext(satchelDispatcher) { summary() }

/**
 * Background sync as a Flow: collecting starts a subscription (a round now,
 * then one per change the relay pushes); cancelling the collector stops it.
 * The flow fails with the [SatchelException] that ended the subscription
 * (e.g. NotAllowed once this member's access was revoked).
 */
fun HealthRecord.changes(relayUrl: String): Flow<ChangeEvent> = callbackFlow {
    val subscription = subscribe(relayUrl, object : ChangeListener {
        override fun onChange(event: ChangeEvent) {
            trySend(event)
        }

        override fun onStopped(error: SatchelException) {
            close(error)
        }
    })
    awaitClose {
        subscription.stop()
        subscription.close()
    }
}
