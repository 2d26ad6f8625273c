package sqlstore

// PlannedQueries maps the queries whose SQLite plans the tests check to a
// name, with dummy arguments for EXPLAIN.
func PlannedQueries(d *Dialect) map[string]string {
	q := newSQLText(d)
	return map[string]string{
		"claim":             q.claim,
		"markSent":          q.markSent[maxIDs],
		"commandsExist":     q.commandsExist[maxIDs],
		"clientsExist":      q.clientsExist[maxIDs],
		"retry":             qRetry,
		"fail":              qFail,
		"getClient":         qGetClient,
		"listClients":       qListClients,
		"listTopics":        qListTopics,
		"clientsOfTopic":    qClientsOfTopic,
		"topicsOfClient":    qTopicsOfClient,
		"countClientsTopic": qCountClientsOfTopic,
		"linkTargets":       qLinkTargets,
		"listPending":       listCommandsQuery([]string{"state = 'pending'"}, 0),
		"listFailed":        listCommandsQuery([]string{"state = 'failed'"}, 0),
		"listByClient":      listCommandsQuery([]string{"client_id = $2"}, 1),
		"listByTarget":      listCommandsQuery([]string{"target = $2"}, 1),
		"listClientPending": listCommandsQuery([]string{"client_id = $2", "state = 'pending'"}, 1),
		"countPending":      countCommandsQuery([]string{"state = 'pending'"}),
		"countByClient":     countCommandsQuery([]string{"client_id = $1"}),
		"countCurrent":      qCountCurrent,
		"countBehindAcks":   qCountBehindAcks,
		"topicBehind":       qTopicBehind,
		"memberStates":      qMemberStates,
		"setTopicAcked":     qSetTopicAcked,
		"listKeyChanges":    qListKeyChanges,
		"forgetPrevKeys":    qForgetPrevKeys,
		"hasPrevKeys":       qHasPrevKeys,
	}
}
