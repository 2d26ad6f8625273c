// Package e2e holds the end-to-end tests of C2 and devices over the real
// brokers: Mosquitto (MQTT), RabbitMQ (AMQP) and our CoAP broker, in both
// crypto modes. It has no non-test code beyond this comment.
package e2e
