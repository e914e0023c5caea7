// scenario.js drives the real Segment Node SDK against a Cartera gateway, as
// a customer's backend would: an anonymous visitor browses on the web, then
// identifies, then buys at a till (the POS source). sdk_test.go runs it and
// checks the result through the admin API.
//
// Environment: CARTERA_URL (gateway base URL), CARTERA_WEB_KEY and
// CARTERA_POS_KEY (write keys). Prints one JSON object on stdout saying what
// was sent; exits 1 on any SDK error or unacknowledged event.
'use strict'

const crypto = require('node:crypto')
const { Analytics } = require('@segment/analytics-node')

const host = mustEnv('CARTERA_URL')
const webKey = mustEnv('CARTERA_WEB_KEY')
const posKey = mustEnv('CARTERA_POS_KEY')

function mustEnv(name) {
  const v = process.env[name]
  if (!v) {
    console.error(`scenario: ${name} is not set`)
    process.exit(2)
  }
  return v
}

const failures = []
const responses = []

// newClient returns an SDK instance that sends only when flushed (a batch
// of up to 15 events to POST {host}/v1/batch) and fails fast: a test wants
// to see the first error, not ten retries.
function newClient(writeKey, label) {
  const a = new Analytics({
    writeKey,
    host,
    path: '/v1/batch',
    flushAt: 15,
    flushInterval: 60000,
    maxRetries: 0,
    httpRequestTimeout: 10000,
  })
  a.on('error', (err) => {
    failures.push({ client: label, code: err.code, reason: String(err.reason && (err.reason.message || err.reason)) })
  })
  a.on('http_response', (r) => {
    responses.push({ client: label, status: r.status, url: r.url, events: JSON.parse(r.body).batch.length })
  })
  return a
}

// send calls an SDK method and resolves with the messageId the SDK gave the
// event once the gateway acknowledged it (or records the failure).
function send(client, method, params) {
  return new Promise((resolve) => {
    client[method](params, (err, ctx) => {
      if (err) {
        failures.push({ method, reason: String(err.message || err) })
        resolve(null)
        return
      }
      resolve(ctx.event.messageId)
    })
  })
}

async function main() {
  const anonymousId = crypto.randomUUID()
  const userId = 'u-123'
  const email = '  Ana.Garcia@Example.COM '
  const orderId = 'pos-' + crypto.randomUUID()

  const web = newClient(webKey, 'web')
  const sent = [
    send(web, 'screen', { anonymousId, name: 'Home', properties: { variant: 'b' } }),
    send(web, 'track', {
      anonymousId,
      event: 'Product Added',
      properties: { product_id: 'sku-42', name: 'Trail shoes', price: 89.9, quantity: 1 },
    }),
    send(web, 'identify', { userId, anonymousId, traits: { email, first_name: 'Ana' } }),
  ]
  await web.closeAndFlush({ timeout: 20000 })
  const [screen, productAdded, identify] = await Promise.all(sent)

  const pos = newClient(posKey, 'pos')
  const order = send(pos, 'track', {
    userId,
    event: 'Order Completed',
    properties: { order_id: orderId, revenue: 129.5, currency: 'EUR', channel: 'pos', store_id: 'madrid-01' },
  })
  await pos.closeAndFlush({ timeout: 20000 })
  const orderCompleted = await order

  const out = {
    anonymousId,
    userId,
    email,
    orderId,
    messageIds: { screen, productAdded, identify, orderCompleted },
    responses,
    failures,
  }
  console.log(JSON.stringify(out))
  const missing = Object.entries(out.messageIds).filter(([, id]) => !id)
  if (failures.length > 0 || missing.length > 0) {
    console.error(`scenario: ${failures.length} SDK errors; unacknowledged: ${missing.map(([k]) => k).join(', ') || 'none'}`)
    process.exit(1)
  }
}

main().catch((err) => {
  console.error('scenario:', err && err.stack ? err.stack : err)
  process.exit(1)
})
